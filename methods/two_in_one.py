"""Two-in-one KD (Zhou et al. 2023): one student feature distilled from both teacher branches."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.method import Context, Method
from kdbench.methods.common import conv_projector, feature_map, kd_loss, match_spatial
from kdbench.models.frequency import dct2
from kdbench.output import Output
from kdbench.registry import METHODS, unknown_message

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "66c62783cfb8"

FEATURE_LOSSES = ("dct", "mse")
HOMOGENIZERS = ("magnitude", "pcgrad", "none")
BRANCHES = ("spatial", "frequency")
EPS = 1e-12
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


def last_stage(features: dict[str, Tensor], prefix: str) -> str:
    """The deepest ``<prefix>stageK`` with a ``[B, C, H, W]`` map."""
    head = prefix + "stage"
    stages = {
        int(name[len(head) :]): name
        for name, value in features.items()
        if name.startswith(head) and name[len(head) :].isdigit() and value.dim() == 4
    }
    if not stages:
        raise ValueError(f"no '{prefix}stageK' maps to pick from (has: {', '.join(features)})")
    return stages[max(stages)]


def student_feature_name(student: Output, name: str) -> str:
    """Resolve the shared student feature: ``auto`` is the last stage; ``pooled`` is allowed."""
    if name == "auto":
        return last_stage(student.features, "")
    student.feature(name)  # raises, listing the student's features
    return name


def branch_feature_name(teacher: Output | None, branch: str, name: str) -> str:
    """Resolve a feature of the teacher's ``branch``; ``auto``: the branch's last stage."""
    features = teacher.features if teacher is not None else {}
    prefix = f"{branch}."
    own = [n for n in features if n.startswith(prefix)]
    if not own:
        raise ValueError(
            f"distilling the {branch} branch needs a dual-branch teacher (features "
            f"'spatial.*' and 'frequency.*'); this teacher has: {', '.join(features) or 'none'}"
        )
    if name == "auto":
        return last_stage(features, prefix)
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


@METHODS.register("two-in-one")
class TwoInOne(BranchDistillation):
    """Two-in-one KD, as documented (the full paper was not available to us): the student's
    shared feature ``z`` feeds a spatial projector (1×1 convs, pixel-domain MSE to the
    teacher's ``spatial.*`` feature) and a frequency projector (3×3 convs, DCT-domain loss to
    ``frequency.*``); the two terms' gradients on ``z`` are homogenized before they reach the
    student. Plus CE and ``kd_weight · T² KL`` to the teacher's fused logits.

    ``homogenize``:
      - ``magnitude`` (RotoGrad's magnitude part, Javaloy & Valera 2022): with ``g_k`` the
        gradient of term ``k`` on ``z`` (norms over the whole batch tensor) and ``g_k⁰`` its
        value at the first step (a buffer, so it is checkpointed), ``r_k = ‖g_k‖ / ‖g_k⁰‖``,
        ``α_k = r_k / Σ_j r_j``, ``C = Σ_k α_k ‖g_k‖`` and ``g̃_k = C · g_k / ‖g_k‖``;
      - ``pcgrad`` (Yu et al. 2020) on ``z``: if ``⟨g_s, g_f⟩ < 0``, each is projected onto the
        normal plane of the other's original gradient;
      - ``none``: ``g_s + g_f`` (the "no homogenization" ablation; same gradients as autograd).

    Cost: two extra ``autograd.grad`` calls that stop at ``z`` (each traverses only its
    projector and loss), then one backward through the student. The projectors keep the
    plain gradients of their own terms.
    """

    description = (
        "Two-in-one KD (Zhou et al. 2023): spatial + frequency projectors on one student "
        "feature, homogenized gradients, + logit KD"
    )

    def __init__(
        self,
        ctx: Context,
        *,
        student_feature: str = "auto",
        spatial_feature: str = "auto",
        frequency_feature: str = "auto",
        frequency_loss: str = "dct",
        homogenize: str = "magnitude",
        ce_weight: float = 1.0,
        kd_weight: float = 1.0,
        temperature: float = 4.0,
        spatial_weight: float = 1.0,
        frequency_weight: float = 1.0,
        projector_channels: int = PROJECTOR_CHANNELS,
        burn_in: int = 20,
    ) -> None:
        """``auto`` features: the student's last stage and each teacher branch's last stage;
        ``student_feature`` may also be ``pooled``. ``projector_channels``: the width of the
        projectors' hidden layers. ``frequency_loss``: ``dct`` or ``mse`` (pixel domain).
        ``burn_in``: the step at which ``magnitude`` takes its reference norms ``‖g_k⁰‖``
        again (RotoGrad's burn-in period, 20 by default), so that they are not the norms of
        the projectors' random initialisation; 0 keeps the first step's."""
        super().__init__(
            ctx, student_feature, ce_weight, kd_weight, temperature, projector_channels
        )
        if homogenize not in HOMOGENIZERS:
            raise ValueError(unknown_message("homogenize mode", homogenize, HOMOGENIZERS))
        self.homogenize = homogenize
        self.burn_in = burn_in
        self.add_term(ctx, "spatial", spatial_feature, "spatial", "mse", spatial_weight)
        self.add_term(
            ctx, "frequency", frequency_feature, "frequency", frequency_loss, frequency_weight
        )
        self.register_buffer("initial_norms", torch.zeros(2))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.last_grads: dict[str, Tensor] = {}
        self.stats: dict[str, Tensor] = {}

    def backward(self, losses: dict[str, Tensor], s_out: Output) -> None:
        z = s_out.feature(self.student_feature)
        g_s, g_f = (self.term_gradient(losses[b], z, self.terms[b].projector) for b in BRANCHES)
        g_s, g_f = g_s.float(), g_f.float()
        h_s, h_f = self.homogenized(g_s, g_f)
        self.steps += 1
        self.last_grads = {"spatial": h_s.detach(), "frequency": h_f.detach()}
        rest = torch.stack([v for k, v in losses.items() if k not in self.terms]).sum()
        (g_rest,) = torch.autograd.grad(rest, z, retain_graph=True)
        self.stats = gradient_stats(g_s, g_f, g_rest.float())
        torch.autograd.backward([rest, z], [None, (h_s + h_f).to(z.dtype)])

    def step_stats(self) -> dict[str, Tensor]:
        """The last step's gradient norms on ``z``, before homogenization: of the spatial and
        the frequency term, of CE + KD, and the cosine between the two feature terms."""
        return self.stats

    def term_gradient(self, loss: Tensor, z: Tensor, projector: str) -> Tensor:
        """``∂loss/∂z``; the projector's own gradients are accumulated into its ``.grad``."""
        params = [p for p in self.projectors[projector].parameters() if p.requires_grad]
        g_z, *g_params = torch.autograd.grad(loss, [z, *params], retain_graph=True)
        for p, g in zip(params, g_params, strict=True):
            p.grad = g if p.grad is None else p.grad + g
        return g_z

    def homogenized(self, g_s: Tensor, g_f: Tensor) -> tuple[Tensor, Tensor]:
        """The two term gradients on ``z`` after ``self.homogenize``."""
        if self.homogenize == "magnitude":
            return self.magnitude(g_s, g_f)
        if self.homogenize == "pcgrad":
            return pcgrad(g_s, g_f)
        return g_s, g_f

    def magnitude(self, g_s: Tensor, g_f: Tensor) -> tuple[Tensor, Tensor]:
        """RotoGrad's magnitude homogenization; the first call records ``‖g_k⁰‖``."""
        norms = torch.stack([g_s.norm(), g_f.norm()]).clamp_min(EPS)
        retake = self.steps == self.burn_in
        initial = torch.where((self.initial_norms > 0) & ~retake, self.initial_norms, norms)
        self.initial_norms.copy_(initial)
        ratios = norms / initial
        alphas = ratios / ratios.sum()
        common = (alphas * norms).sum()
        return g_s * (common / norms[0]), g_f * (common / norms[1])


def gradient_stats(g_s: Tensor, g_f: Tensor, g_rest: Tensor) -> dict[str, Tensor]:
    """Norms of each term's gradient on ``z`` and the cosine between the two feature terms."""
    norms = {"grad_spatial": g_s.norm(), "grad_frequency": g_f.norm(), "grad_ce_kd": g_rest.norm()}
    cosine = (g_s * g_f).sum() / (norms["grad_spatial"] * norms["grad_frequency"]).clamp_min(EPS)
    return {k: v.detach() for k, v in norms.items()} | {"cos_spatial_frequency": cosine.detach()}


def pcgrad(g_s: Tensor, g_f: Tensor) -> tuple[Tensor, Tensor]:
    """PCGrad for two gradients: on conflict (``⟨g_s, g_f⟩ < 0``) each loses its component
    along the other, ``g_s - ⟨g_s, g_f⟩/‖g_f‖² · g_f`` and symmetrically; else unchanged."""
    dot = torch.clamp((g_s * g_f).sum(), max=0.0)
    return (
        g_s - dot / g_f.pow(2).sum().clamp_min(EPS) * g_f,
        g_f - dot / g_s.pow(2).sum().clamp_min(EPS) * g_s,
    )
