"""Relational KD (Park et al. 2019): match the distances and angles within a batch's embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdbench.method import Context, Method
from kdbench.methods.common import kd_term, teacher_output
from kdbench.methods.selection import pick_embeddings
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"

EPS = 1e-12  # clamps squared distances before the square root


@METHODS.register("rkd")
class RKD(Method):
    description = "RKD (Park et al. 2019): distance- and angle-wise relations of batch embeddings"

    def __init__(
        self,
        ctx: Context,
        *,
        student_feature: str = "pooled",
        teacher_feature: str = "auto",
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
    ) -> None:
        """``student_feature`` / ``teacher_feature``: the embeddings whose relations are
        matched; ``auto``: ``fused`` for the dual-branch teacher, else ``pooled``. No projector:
        the relations are between samples, so the two dimensions may differ.
        ``distance_weight``: weight of the distance term (Huber loss between the pairwise
        distances, each side divided by its mean). ``angle_weight``: weight of the angle term
        (Huber loss between the cosines of the angles of every sample triple).
        ``ce_weight``: weight of the cross-entropy. ``kd_weight``: logit KD from the teacher's
        logits at ``temperature`` (0: none, RepDistiller's ``-a 0``).

        Defaults: RepDistiller's CIFAR-100 recipe (``RKDLoss(w_d=25, w_a=50)``, ``-r 1 -a 0
        -b 1`` on the pooled features), Park et al.'s weights. Distances and angles are
        computed in float32, outside autocast."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "rkd")
        self.student_feature, self.teacher_feature = pick_embeddings(
            ctx.student, teacher, student_feature, teacher_feature
        )
        self.distance_weight, self.angle_weight = distance_weight, angle_weight
        self.ce_weight = ce_weight
        self.kd_weight, self.temperature = kd_weight, temperature

    def teacher_features(self) -> list[str]:
        return [self.teacher_feature]

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        s = s_out.feature(self.student_feature)
        t = t_out.feature(self.teacher_feature).detach()
        with torch.autocast(s.device.type, enabled=False):
            s, t = s.float().flatten(1), t.float().flatten(1)
            distance = F.smooth_l1_loss(normalised_distances(s), normalised_distances(t))
            angle = F.smooth_l1_loss(triple_cosines(s), triple_cosines(t))
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "rkd_distance": self.distance_weight * distance,
            "rkd_angle": self.angle_weight * angle,
        } | kd_term(self.kd_weight, s_out, t_out, self.temperature)


def normalised_distances(e: Tensor) -> Tensor:
    """``[B, B]`` Euclidean distances between the rows of ``e`` (0 on the diagonal), divided by
    their mean over the non-zero entries."""
    square = e.pow(2).sum(1)
    d = (square[:, None] + square[None, :] - 2 * e @ e.T).clamp(min=EPS).sqrt()
    d = d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))
    return d / d[d > 0].mean()


def triple_cosines(e: Tensor) -> Tensor:
    """``[B·B·B]``: for every anchor i, the cosine between ``e_j − e_i`` and ``e_k − e_i``."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()
