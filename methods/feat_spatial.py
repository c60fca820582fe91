"""Two-in-one ablation: feature KD from the teacher's spatial branch only."""

from __future__ import annotations

from kdbench.method import Context
from kdbench.methods.branches import PROJECTOR_CHANNELS, BranchDistillation
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "41cb731fca2b"


@METHODS.register("feat-spatial")
class FeatSpatial(BranchDistillation):
    """CE + logit KD + the spatial projector's pixel-domain MSE to ``spatial.*`` (as in
    ``two-in-one``); no frequency term, so nothing to homogenize."""

    description = "Two-in-one ablation: spatial-branch feature KD only (+ CE, logit KD)"

    def __init__(
        self,
        ctx: Context,
        *,
        student_feature: str = "auto",
        spatial_feature: str = "auto",
        ce_weight: float = 1.0,
        kd_weight: float = 1.0,
        temperature: float = 4.0,
        spatial_weight: float = 1.0,
        projector_channels: int = PROJECTOR_CHANNELS,
    ) -> None:
        super().__init__(
            ctx, student_feature, ce_weight, kd_weight, temperature, projector_channels
        )
        self.add_term(ctx, "spatial", spatial_feature, "spatial", "mse", spatial_weight)
