"""FitNets (Romero et al. 2015): a regressed student stage learns to match a teacher feature."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.method import Context, Method
from kdbench.methods.common import (
    conv_projector,
    feature_map,
    kd_term,
    match_spatial,
    relative_stage,
    stage_names,
    teacher_output,
)
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "7649d0a0eb8f"


@METHODS.register("fitnets")
class FitNets(Method):
    description = "FitNets (Romero et al. 2015): regress a student stage onto a teacher feature"

    def __init__(
        self,
        ctx: Context,
        *,
        student_feature: str = "auto",
        teacher_feature: str = "auto",
        kernel: int = 1,
        beta: float = 100.0,
        ce_weight: float = 1.0,
        hint_epochs: int = 0,
        relu: bool = True,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
    ) -> None:
        """``auto`` features: the student's middle stage (``ceil(N/2)`` of ``N``) and the teacher
        stage at the same relative depth (its ``spatial.`` branch for the dual-branch teacher).
        ``hint_epochs``: the first epochs train on the hint alone (the FitNets first stage).
        The regressor is ``kernel``×``kernel`` conv + BN + ReLU, as the references' ``ConvReg``
        (the teacher's stage outputs are post-ReLU); ``relu=False`` drops the ReLU.
        ``kd_weight`` adds logit KD from the teacher's logits at ``temperature`` (RepDistiller's
        "FitNet+KD"; after the hint epochs, with CE)."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "fitnets")
        self.student_feature, self.teacher_feature = pick_features(
            ctx.student, teacher, student_feature, teacher_feature
        )
        c_in = feature_map(ctx.student, self.student_feature).shape[1]
        c_out = feature_map(teacher, self.teacher_feature).shape[1]
        self.regressor = conv_projector(c_in, c_out, kernel)
        if relu:
            self.regressor.append(nn.ReLU())
        self.beta = beta
        self.ce_weight = ce_weight
        self.hint_epochs = hint_epochs
        self.kd_weight, self.temperature = kd_weight, temperature
        self.epoch = 0

    def teacher_features(self) -> list[str]:
        return [self.teacher_feature]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        s = self.regressor(feature_map(s_out, self.student_feature))
        t = feature_map(t_out, self.teacher_feature).detach()
        s, t = match_spatial(s, t)
        terms = {}
        if self.epoch >= self.hint_epochs:
            terms["ce"] = self.ce_weight * F.cross_entropy(s_out.logits, batch["label"])
            terms |= kd_term(self.kd_weight, s_out, t_out, self.temperature)
        terms["hint"] = self.beta * F.mse_loss(s, t)
        return terms


def pick_features(
    student: Output, teacher: Output, student_feature: str, teacher_feature: str
) -> tuple[str, str]:
    """Resolve ``auto`` for the hinted student feature and the guiding teacher feature."""
    if student_feature == "auto":
        stages = stage_names(student)
        student_feature = stages[math.ceil(len(stages) / 2) - 1]
    if teacher_feature == "auto":
        stages = stage_names(student)
        if student_feature not in stages:
            raise ValueError(
                f"teacher_feature='auto' pairs student stages only; {student_feature!r} is not "
                f"one ({', '.join(stages)}): set teacher_feature explicitly"
            )
        position = stages.index(student_feature) + 1
        teacher_feature = relative_stage(position, len(stages), stage_names(teacher))
    return student_feature, teacher_feature
