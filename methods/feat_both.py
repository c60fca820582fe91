"""Two-in-one ablation: both branches distilled naively, through one projector."""

from __future__ import annotations

from kdbench.method import Context
from kdbench.methods.branches import PROJECTOR_CHANNELS, BranchDistillation
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "d89523d3c8e0"


@METHODS.register("feat-both")
class FeatBoth(BranchDistillation):
    """CE + logit KD + both branches' feature terms, summed, read from ONE spatial-kind
    projector whose output is matched to ``spatial.*`` (pixel MSE) and to ``frequency.*``
    (``frequency_loss``): no branch-specific projector, no gradient homogenization. The two
    teacher features must have the same channel count (they do when both branches share a
    backbone)."""

    description = "Two-in-one ablation: one projector matched to both branches, losses summed"

    def __init__(
        self,
        ctx: Context,
        *,
        student_feature: str = "auto",
        spatial_feature: str = "auto",
        frequency_feature: str = "auto",
        frequency_loss: str = "dct",
        ce_weight: float = 1.0,
        kd_weight: float = 1.0,
        temperature: float = 4.0,
        spatial_weight: float = 1.0,
        frequency_weight: float = 1.0,
        projector_channels: int = PROJECTOR_CHANNELS,
    ) -> None:
        super().__init__(
            ctx, student_feature, ce_weight, kd_weight, temperature, projector_channels
        )
        self.add_term(ctx, "spatial", spatial_feature, "spatial", "mse", spatial_weight)
        self.add_term(
            ctx, "frequency", frequency_feature, "spatial", frequency_loss, frequency_weight
        )
