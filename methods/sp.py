"""Similarity-preserving KD (Tung & Mori 2019): match the batch's Gram matrices of stage maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdbench.method import Context, Method
from kdbench.methods.common import kd_term, teacher_output
from kdbench.methods.selection import pick_pairs, teacher_stages
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"


@METHODS.register("sp")
class SimilarityPreserving(Method):
    description = "SP (Tung & Mori 2019): match row-normalised batch Gram matrices of stage maps"

    def __init__(
        self,
        ctx: Context,
        *,
        pairs: list[list[str]] | str = "auto",
        beta: float = 3000.0,
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
    ) -> None:
        """``pairs``: ``[[student_feature, teacher_feature], ...]``, or ``auto``: the deepest
        student stage whose map, and that of the teacher stage at the same relative depth (the
        ``spatial.`` branch of the dual-branch teacher), is 4×4 or more. ``beta``: weight of
        the SP term, Σ_pairs ‖G_s − G_t‖²_F / B², with G the ``[B, B]`` Gram matrix of the
        flattened maps, each row L2-normalised: no projector, the maps' shapes may differ.
        ``ce_weight``: weight of the cross-entropy. ``kd_weight``: logit KD from the teacher's
        logits at ``temperature`` (0: none, RepDistiller's ``-a 0``).

        Defaults: RepDistiller's CIFAR-100 recipe (``-r 1 -a 0 -b 3000`` on ``feat[-2]``, the
        last stage's output). Changed for 64 px: that last stage is 2×2 on resnet10t, so auto
        takes the deepest of 4×4 or more (stage4, against the teacher's ``spatial.stage4``); on
        CIFAR ResNets it is the last stage (8×8), as the reference. The Gram matrices are
        computed in float32, outside autocast."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "sp")
        self.pairs = pick_pairs(pairs, ctx.student, teacher, "SP", deepest=1)
        self.beta = beta
        self.ce_weight = ce_weight
        self.kd_weight, self.temperature = kd_weight, temperature

    def teacher_features(self) -> list[str]:
        return teacher_stages(self.pairs)

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        sp = sum(
            sp_loss(s_out.feature(s_name), t_out.feature(t_name).detach())
            for s_name, t_name in self.pairs
        )
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "sp": self.beta * sp,
        } | kd_term(self.kd_weight, s_out, t_out, self.temperature)


def batch_similarity(x: Tensor) -> Tensor:
    """``[B, ...]`` → the ``[B, B]`` Gram matrix of the flattened samples, rows L2-normalised."""
    x = x.flatten(1)
    return F.normalize(x @ x.T)


def sp_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """‖G_s − G_t‖²_F / B², in float32."""
    with torch.autocast(student.device.type, enabled=False):
        diff = batch_similarity(student.float()) - batch_similarity(teacher.float())
        return diff.pow(2).sum() / len(student) ** 2
