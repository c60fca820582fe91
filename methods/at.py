"""Attention transfer (Zagoruyko & Komodakis 2017): match normalised spatial attention maps."""

from __future__ import annotations

import warnings

import torch.nn.functional as F
from torch import Tensor

from kdbench.method import Context, Method
from kdbench.methods.common import kd_term, match_spatial, teacher_output
from kdbench.methods.selection import MIN_AREA, compared_size, pick_pairs, teacher_stages
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "d38ddabe984f"

AUTO_STAGES = 3  # auto pairs the deepest three stages whose maps are 4×4 or more


@METHODS.register("at")
class AttentionTransfer(Method):
    description = "AT (Zagoruyko & Komodakis 2017): match spatial attention maps of paired stages"

    def __init__(
        self,
        ctx: Context,
        *,
        pairs: list[list[str]] | str = "auto",
        p: float = 2.0,
        beta: float = 1000.0,
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
    ) -> None:
        """``pairs``: ``[[student_feature, teacher_feature], ...]``, or ``auto``: the deepest
        three student stages, each with the teacher stage at the same relative depth (the
        ``spatial.`` branch of the dual-branch teacher), whose compared maps are at least 4×4.

        Loss: CE + β/2 · Σ_pairs mean((a_s − a_t)²), with ``a`` the L2-normalised attention map
        (Zagoruyko & Komodakis's code; RepDistiller writes β·Σ with β = 1000, which is β = 2000
        here). Each map has unit norm over its H·W positions, so a pair's loss scales as
        1/(H·W): β = 1000 was set for CIFAR's 32/16/8-px maps, and a 2×2 pair outweighs an 8×8
        one sixteen-fold. Pairing a map smaller than 4×4 warns. ``kd_weight`` adds logit KD
        from the teacher's logits at ``temperature`` (RepDistiller's "AT+KD")."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "at")
        self.pairs = pick_pairs(pairs, ctx.student, teacher, "AT", deepest=AUTO_STAGES)
        for s_name, t_name in self.pairs:
            height, width = compared_size(ctx.student, teacher, (s_name, t_name))
            if height * width < MIN_AREA:
                warnings.warn(
                    f"AT pair ({s_name}, {t_name}) compares {height}×{width} maps, smaller than "
                    f"4×4: its loss, ∝ 1/(H·W), will dominate the sum",
                    stacklevel=2,
                )
        self.p = p
        self.beta = beta
        self.ce_weight = ce_weight
        self.kd_weight, self.temperature = kd_weight, temperature

    def teacher_features(self) -> list[str]:
        return teacher_stages(self.pairs)

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        at = sum(
            at_loss(s_out.feature(s_name), t_out.feature(t_name).detach(), self.p)
            for s_name, t_name in self.pairs
        )
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "at": self.beta / 2 * at,
        } | kd_term(self.kd_weight, s_out, t_out, self.temperature)


def attention_map(x: Tensor, p: float) -> Tensor:
    """``[B, C, H, W]`` → the L2-normalised map ``mean_c |x|^p``, flattened to ``[B, H·W]``."""
    return F.normalize(x.abs().pow(p).mean(1).flatten(1))


def at_loss(student: Tensor, teacher: Tensor, p: float) -> Tensor:
    """Mean squared difference of the two attention maps, pooled to the smaller size."""
    student, teacher = match_spatial(student, teacher)
    return (attention_map(student, p) - attention_map(teacher, p)).pow(2).mean()
