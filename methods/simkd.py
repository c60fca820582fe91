"""SimKD (Chen et al. CVPR 2022): reuse the teacher's classifier; align features by one L2 loss."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.method import Context, Method
from kdbench.methods.common import feature_map, stage_names, teacher_output
from kdbench.output import Head, Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"


@METHODS.register("simkd")
class SimKD(Method):
    """The student's last map goes through a projector to the teacher's last map(s), and the
    **teacher's classifier** turns it into the deployed student's logits: the run evaluates,
    costs and saves student + projector + teacher classifier (``deployed``). The only loss is
    ``weight · MSE(projector(s), t)``; no cross-entropy, no logit KD (SimKD's recipe)."""

    description = "SimKD (Chen et al. 2022): projector to the teacher's map, its classifier reused"

    def __init__(
        self,
        ctx: Context,
        *,
        student_feature: str = "auto",
        factor: int = 2,
        weight: float = 1.0,
    ) -> None:
        """``student_feature``: the student map that is projected (``auto``: its last stage).
        ``factor``: the projector's bottleneck, ``C_t / factor`` channels in its 1×1-3×3-1×1
        conv-BN-ReLU stack. ``weight``: of the MSE. Defaults: the SimKD repository's CIFAR-100
        recipe (factor 2, β = 1, no other term). The teacher's target is the concatenation of
        the maps its classifier reads (for the dual-branch teacher both branches' last maps);
        the larger of the two maps is average-pooled to the smaller's size, as in SimKD.

        Needs a teacher whose classifier, applied to those maps, gives its logits (checked on
        the dry batch: true for ResNets, the CIFAR nets and the dual-branch teacher). A SimKD
        run's saved weights are the deployed network's, so they cannot be loaded as a plain
        student (nor serve as ``teacher.run``)."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "simkd")
        head = checked_head(ctx.teacher_head, teacher)
        self.student_feature = (
            stage_names(ctx.student)[-1] if student_feature == "auto" else student_feature
        )
        self.teacher_maps = head.maps
        s_channels = feature_map(ctx.student, self.student_feature).shape[1]
        t_channels = sum(teacher.feature(name).shape[1] for name in head.maps)
        self.size = teacher.feature(head.maps[0]).shape[-1]
        self.projector = projector(s_channels, t_channels, factor)
        self.weight = weight
        self.teacher_classifier = (head.module,)  # a tuple: not this method's parameter

    def teacher_features(self) -> list[str]:
        return list(self.teacher_maps)

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        source = feature_map(s_out, self.student_feature)
        target = torch.cat([t_out.feature(name) for name in self.teacher_maps], dim=1)
        source, target = to_smaller(source, target)
        return {"simkd": self.weight * F.mse_loss(self.projector(source), target.detach())}

    def deployed(self, student: nn.Module) -> nn.Module:
        return ReusedClassifier(
            student, self.student_feature, self.projector, self.teacher_classifier[0], self.size
        )


class ReusedClassifier(nn.Module):
    """The deployed SimKD student: ``teacher_classifier(projector(student map))``."""

    def __init__(
        self, student: nn.Module, feature: str, proj: nn.Module, classifier: nn.Module, size: int
    ) -> None:
        super().__init__()
        self.student = student
        self.feature = feature
        self.projector = proj
        self.classifier = classifier
        self.size = size  # the teacher map's side: a larger student map is pooled to it

    def train(self, mode: bool = True) -> ReusedClassifier:
        """The teacher's classifier stays in eval mode, as the rest of the teacher."""
        super().train(mode)
        self.classifier.eval()
        return self

    def forward(self, x: Tensor) -> Output:
        out = self.student(x)
        source = feature_map(out, self.feature)
        if source.shape[-1] > self.size:
            source = F.adaptive_avg_pool2d(source, self.size)
        return dataclasses.replace(out, logits=self.classifier(self.projector(source)))


def projector(c_in: int, c_out: int, factor: int) -> nn.Sequential:
    """SimKD's projector: 1×1, 3×3 and 1×1 convolutions (no bias), each with BN and ReLU,
    through ``c_out // factor`` channels."""
    if factor < 1 or c_out // factor < 1:
        raise ValueError(f"simkd: factor must be in 1..{c_out}, got {factor}")
    mid = c_out // factor

    def block(a: int, b: int, kernel: int) -> list[nn.Module]:
        conv = nn.Conv2d(a, b, kernel, padding=kernel // 2, bias=False)
        return [conv, nn.BatchNorm2d(b), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(c_in, mid, 1), *block(mid, mid, 3), *block(mid, c_out, 1))


def to_smaller(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool whichever map is larger to the other's side (square maps)."""
    s, t = source.shape[-1], target.shape[-1]
    if s > t:
        return F.adaptive_avg_pool2d(source, t), target
    return source, F.adaptive_avg_pool2d(target, s) if t > s else target


def checked_head(head: Head | None, teacher: Output) -> Head:
    """The teacher's classifier head, checked to give the teacher's logits on its own maps."""
    if head is None:
        raise ValueError("simkd reuses the teacher's classifier: this teacher exposes none")
    try:
        with torch.no_grad():
            logits = head.module(torch.cat([teacher.feature(n) for n in head.maps], dim=1))
    except RuntimeError:  # shapes that do not fit: a head with more between map and classifier
        logits = None
    if logits is None or not torch.allclose(
        logits.float(), teacher.logits.float(), rtol=1e-3, atol=1e-4
    ):
        raise ValueError(
            "simkd: the teacher's classifier on its maps "
            f"{', '.join(head.maps)} does not give its logits (it normalises after its last "
            "stage?); SimKD needs a teacher whose classifier reads its last maps"
        )
    return head
