"""Feature KD from the dual-branch teacher's branches: one shared student feature, a projector
per target, standardised-map losses. The base of ``two-in-one`` and its ``feat-*`` ablations."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.method import Context, Method
from kdbench.methods.common import (
    conv_projector,
    feature_map,
    kd_loss,
    match_spatial,
)
from kdbench.models.frequency import dct2
from kdbench.output import Output
from kdbench.registry import unknown_message

FEATURE_LOSSES = ("dct", "mse")
# Hidden width of the projectors: 128 costs the two-in-one step about 10 ms less than 256 on
# 2 CPU cores (resnet10t, batch 64), and a 2x2x512 student map does not need more.
PROJECTOR_CHANNELS = 128


class Term(NamedTuple):
    """One feature-distillation term: a teacher feature, the projector that targets it, a loss."""

    feature: str
    projector: str
    loss: str
    weight: float


def spatial_projector(c_in: int, c_out: int, width: int) -> nn.Sequential:
    """1×1 conv + BN + ReLU + 1×1 conv: a per-position map onto the spatial branch's channels."""
    return nn.Sequential(*conv_projector(c_in, width, 1), nn.ReLU(), nn.Conv2d(width, c_out, 1))


def frequency_projector(c_in: int, c_out: int, width: int) -> nn.Sequential:
    """Two 3×3 conv + BN + ReLU blocks (5×5 receptive field) + 1×1 conv: mixes neighbouring
    positions, as a frequency (DCT) target depends on a map's spatial structure."""
    return nn.Sequential(
        *conv_projector(c_in, width, 3),
        nn.ReLU(),
        *conv_projector(width, width, 3),
        nn.ReLU(),
        nn.Conv2d(width, c_out, 1),
    )


PROJECTORS = {"spatial": spatial_projector, "frequency": frequency_projector}


def standardize(x: Tensor) -> Tensor:
    """Each sample's map to zero mean and unit variance over ``C, H, W`` (no affine)."""
    return F.layer_norm(x, x.shape[1:])


def log_spectrum(x: Tensor) -> Tensor:
    """``log(1 + |DCT2(x)|)``: the orthonormal 2-D DCT of each channel, log-magnitude."""
    return torch.log1p(dct2(x).abs())


def feature_distance(student: Tensor, teacher: Tensor, loss: str) -> Tensor:
    """MSE between standardised maps (pooled to a common size), in float32.

    ``mse``: in the pixel domain. ``dct``: between log-magnitude DCT spectra. (A plain MSE
    of orthonormal DCT coefficients would equal ``mse`` exactly, by Parseval; the log
    magnitude compresses the large, mostly low-frequency coefficients, so errors in the small
    high-frequency ones weigh relatively more, and it ignores each coefficient's sign.)
    """
    with torch.autocast(student.device.type, enabled=False):
        s, t = match_spatial(student.float(), teacher.float())
        s, t = standardize(s), standardize(t)
        if loss == "dct":
            s, t = log_spectrum(s), log_spectrum(t)
        return F.mse_loss(s, t)


def last_map(out: Output, stages: list[str]) -> str:
    """The deepest of ``stages`` that is a ``[B, C, H, W]`` map in ``out``."""
    maps = [name for name in stages if out.feature(name).dim() == 4]
    if not maps:
        raise ValueError(f"no stage map to pick from among {', '.join(stages)}")
    return maps[-1]


def student_feature_name(student: Output, name: str) -> str:
    """Resolve the shared student feature: ``auto`` is the last stage; ``pooled`` is allowed."""
    if name == "auto":
        return last_map(student, student.stage_names())
    student.feature(name)  # raises, listing the student's features
    return name


def branch_feature_name(teacher: Output | None, branch: str, name: str) -> str:
    """Resolve a feature of the teacher's ``branch`` (``Output.branches``); ``auto``: the
    branch's last stage map."""
    branches = teacher.branches if teacher is not None else {}
    if branch not in branches:
        features = ", ".join(teacher.features) if teacher is not None else "none"
        raise ValueError(
            f"distilling the {branch} branch needs a dual-branch teacher (an Output with a "
            f"{branch!r} branch); this teacher has: {features} (branches: "
            f"{', '.join(branches) or 'none'})"
        )
    if name == "auto":
        return last_map(teacher, list(branches[branch]))
    own = [n for n in teacher.features if n.startswith(f"{branch}.")]
    if name not in own:
        raise ValueError(unknown_message(f"{branch} feature", name, own))
    return name


class BranchDistillation(Method):
    """CE + logit KD from the teacher's fused head + feature terms from the teacher's branches,
    all read from one shared student feature ``z`` through projectors.

    Subclasses choose the terms (``add_term``): which branches, and which projector each uses.
    Feature terms are MSEs of per-sample standardised maps, so at init (unrelated maps) the
    pixel-domain term is about 2 and the DCT log-magnitude one about 0.2 (``2·Var log(1+|x|)``
    for Gaussian coefficients): with weights 1 both are on the order of CE and KD.
    """

    def __init__(
        self,
        ctx: Context,
        student_feature: str,
        ce_weight: float,
        kd_weight: float,
        temperature: float,
        projector_channels: int,
    ) -> None:
        super().__init__(ctx)
        self.student_feature = student_feature_name(ctx.student, student_feature)
        self.in_channels = feature_map(ctx.student, self.student_feature).shape[1]
        self.projector_channels = projector_channels
        self.ce_weight = ce_weight
        self.kd_weight = kd_weight
        self.temperature = temperature
        self.projectors = nn.ModuleDict()
        self.terms: dict[str, Term] = {}

    def add_term(
        self, ctx: Context, branch: str, feature: str, projector: str, loss: str, weight: float
    ) -> None:
        """Distil teacher feature ``feature`` of ``branch`` through projector ``projector``
        (built on first use, shared by later terms that name it) with loss ``loss``."""
        if loss not in FEATURE_LOSSES:
            raise ValueError(unknown_message("feature loss", loss, FEATURE_LOSSES))
        name = branch_feature_name(ctx.teacher, branch, feature)
        channels = feature_map(ctx.teacher, name).shape[1]
        if projector not in self.projectors:
            self.projectors[projector] = PROJECTORS[projector](
                self.in_channels, channels, self.projector_channels
            )
        out_channels = self.projectors[projector][-1].out_channels
        if out_channels != channels:
            raise ValueError(
                f"one {projector} projector serves several teacher features, but {name!r} has "
                f"{channels} channels and the projector outputs {out_channels}"
            )
        self.terms[branch] = Term(name, projector, loss, weight)

    def teacher_features(self) -> list[str]:
        return [term.feature for term in self.terms.values()]

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        z = feature_map(s_out, self.student_feature)
        projected = {key: projector(z) for key, projector in self.projectors.items()}
        terms = {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "kd": self.kd_weight * kd_loss(s_out.logits, t_out.logits, self.temperature),
        }
        for branch, term in self.terms.items():
            target = feature_map(t_out, term.feature).detach()
            distance = feature_distance(projected[term.projector], target, term.loss)
            terms[branch] = term.weight * distance
        return terms
