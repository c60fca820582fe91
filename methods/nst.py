"""Neuron selectivity transfer (Huang & Wang 2017): MMD between the channels' spatial patterns."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdbench.method import Context, Method
from kdbench.methods.common import kd_term, match_spatial, teacher_output
from kdbench.methods.selection import pick_pairs, teacher_stages
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"


@METHODS.register("nst")
class NST(Method):
    description = "NST (Huang & Wang 2017): polynomial-kernel MMD of normalised channel maps"

    def __init__(
        self,
        ctx: Context,
        *,
        pairs: list[list[str]] | str = "auto",
        beta: float = 50.0,
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
    ) -> None:
        """``pairs``: ``[[student_feature, teacher_feature], ...]``, or ``auto``: every student
        stage after the stem, each with the teacher stage at the same relative depth (the
        ``spatial.`` branch of the dual-branch teacher), whose compared maps are 4×4 or more.
        Each channel's map, flattened over H·W (the larger map average-pooled to the smaller),
        is L2-normalised; a pair's loss is the squared MMD between the student's and the
        teacher's channels with the kernel k(x, y) = (xᵀy)²: mean k(s, s) + mean k(t, t) −
        2 mean k(s, t); no projector, the channel counts may differ. ``beta``: weight of the
        sum over pairs. ``ce_weight``: weight of the cross-entropy. ``kd_weight``: logit KD
        from the teacher's logits at ``temperature`` (0: none, RepDistiller's ``-a 0``).

        Defaults: RepDistiller's CIFAR-100 recipe (``NSTLoss`` on ``feat[1:-1]``, ``-r 1 -a 0
        -b 50``; mdistiller's ``NST.LOSS.FEAT_WEIGHT`` is 50 too). Changed for 64 px: auto
        keeps the stages compared at 4×4 or more (resnet10t: stage2–stage4; its 2×2 stage5 is
        left out); on CIFAR ResNets auto is the reference's ``feat[1:-1]``. The kernels are
        computed in float32, outside autocast."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "nst")
        self.pairs = pick_pairs(pairs, ctx.student, teacher, "NST", skip_stem=True)
        self.beta = beta
        self.ce_weight = ce_weight
        self.kd_weight, self.temperature = kd_weight, temperature

    def teacher_features(self) -> list[str]:
        return teacher_stages(self.pairs)

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        nst = sum(
            nst_loss(s_out.feature(s_name), t_out.feature(t_name).detach())
            for s_name, t_name in self.pairs
        )
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "nst": self.beta * nst,
        } | kd_term(self.kd_weight, s_out, t_out, self.temperature)


def polynomial_kernel(a: Tensor, b: Tensor) -> Tensor:
    """``[B, Ca, N]``, ``[B, Cb, N]`` → ``[B, Ca, Cb]`` of (aᵢᵀbⱼ)²."""
    return torch.bmm(a, b.transpose(1, 2)).pow(2)


def nst_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Squared MMD between the normalised channel maps of the two, in float32."""
    student, teacher = match_spatial(student, teacher)
    with torch.autocast(student.device.type, enabled=False):
        s = F.normalize(student.float().flatten(2), dim=2)
        t = F.normalize(teacher.float().flatten(2), dim=2)
        return (
            polynomial_kernel(s, s).mean()
            + polynomial_kernel(t, t).mean()
            - 2 * polynomial_kernel(s, t).mean()
        )
