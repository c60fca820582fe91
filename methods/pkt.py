"""Probabilistic knowledge transfer (Passalis & Tefas 2018): match the batch's similarity laws."""

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

EPS = 1e-7  # the reference's, in the norms and inside the logarithm


@METHODS.register("pkt")
class PKT(Method):
    description = "PKT (Passalis & Tefas 2018): KL between the batch's cosine-similarity laws"

    def __init__(
        self,
        ctx: Context,
        *,
        student_feature: str = "pooled",
        teacher_feature: str = "auto",
        beta: float = 30000.0,
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
    ) -> None:
        """``student_feature`` / ``teacher_feature``: the embeddings compared; ``auto``:
        ``fused`` for the dual-branch teacher, else ``pooled``. No projector: each side becomes
        a ``[B, B]`` law of cosine similarities, so the dimensions may differ.
        ``beta``: weight of the PKT term, the mean over the ``B²`` entries of
        p_t · log(p_t / p_s), with p each row's similarities mapped to [0, 1] and normalised.
        ``ce_weight``: weight of the cross-entropy. ``kd_weight``: logit KD from the teacher's
        logits at ``temperature`` (0: none, RepDistiller's ``-a 0``).

        Defaults: RepDistiller's CIFAR-100 recipe (``-r 1 -a 0 -b 30000`` on the pooled
        features; mdistiller's ``PKT.LOSS.FEAT_WEIGHT`` is 30000 too). The laws are computed in
        float32, outside autocast."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "pkt")
        self.student_feature, self.teacher_feature = pick_embeddings(
            ctx.student, teacher, student_feature, teacher_feature
        )
        self.beta = beta
        self.ce_weight = ce_weight
        self.kd_weight, self.temperature = kd_weight, temperature

    def teacher_features(self) -> list[str]:
        return [self.teacher_feature]

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        s = s_out.feature(self.student_feature)
        t = t_out.feature(self.teacher_feature).detach()
        with torch.autocast(s.device.type, enabled=False):
            p_s, p_t = similarity_law(s.float().flatten(1)), similarity_law(t.float().flatten(1))
            pkt = (p_t * torch.log((p_t + EPS) / (p_s + EPS))).mean()
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "pkt": self.beta * pkt,
        } | kd_term(self.kd_weight, s_out, t_out, self.temperature)


def similarity_law(e: Tensor) -> Tensor:
    """``[B, B]``: the cosine similarities of the rows of ``e``, mapped to [0, 1] by (c + 1)/2,
    each row divided by its sum."""
    e = e / (e.norm(dim=1, keepdim=True) + EPS)
    similarity = (e @ e.T + 1) / 2
    return similarity / similarity.sum(1, keepdim=True)
