"""Variational information distillation (Ahn et al. 2019): a Gaussian likelihood of teacher maps."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.method import Context, Method
from kdbench.methods.common import kd_term, match_spatial, teacher_output
from kdbench.methods.selection import pick_pairs, teacher_stages
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"


@METHODS.register("vid")
class VID(Method):
    description = "VID (Ahn et al. 2019): regress teacher stage maps with a learned variance"

    def __init__(
        self,
        ctx: Context,
        *,
        pairs: list[list[str]] | str = "auto",
        init_variance: float = 5.0,
        eps: float = 1e-5,
        beta: float = 1.0,
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
    ) -> None:
        """``pairs``: ``[[student_feature, teacher_feature], ...]``, or ``auto``: every student
        stage after the stem, each with the teacher stage at the same relative depth (the
        ``spatial.`` branch of the dual-branch teacher), whose compared maps are 4×4 or more.
        Each pair has a regressor (1×1 convs C_s → C_t → C_t → C_t, ReLU between, no bias)
        predicting the mean μ of the teacher map and one variance per teacher channel,
        σ² = softplus(a) + ``eps``, with ``a`` learned and set so that σ² = ``init_variance``
        at the start. ``beta``: weight of the VID term, Σ_pairs mean(½((μ − t)²/σ² + log σ²)),
        the larger map average-pooled to the smaller. ``ce_weight``: weight of the
        cross-entropy. ``kd_weight``: logit KD from the teacher's logits at ``temperature``
        (0: none, RepDistiller's ``-a 0``).

        Defaults: RepDistiller's CIFAR-100 recipe (``VIDLoss(s, t, t)`` on ``feat[1:-1]``,
        ``init_pred_var=5``, ``eps=1e-5``, ``-r 1 -a 0 -b 1``). Changed for 64 px: auto keeps
        the stages compared at 4×4 or more (resnet10t: stage2–stage4, 16×16 to 4×4; its 2×2
        stage5 is left out); on CIFAR ResNets auto is the reference's ``feat[1:-1]``."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "vid")
        self.pairs = pick_pairs(pairs, ctx.student, teacher, "VID", skip_stem=True)
        self.regressors = nn.ModuleList(
            VariationalRegressor(
                ctx.student.feature(s_name).shape[1],
                teacher.feature(t_name).shape[1],
                init_variance,
                eps,
            )
            for s_name, t_name in self.pairs
        )
        self.beta = beta
        self.ce_weight = ce_weight
        self.kd_weight, self.temperature = kd_weight, temperature

    def teacher_features(self) -> list[str]:
        return teacher_stages(self.pairs)

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        vid = 0.0
        for (s_name, t_name), regressor in zip(self.pairs, self.regressors, strict=True):
            s, t = match_spatial(s_out.feature(s_name), t_out.feature(t_name).detach())
            mean, variance = regressor(s)
            vid = vid + gaussian_nll(mean.float(), variance, t.float())
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "vid": self.beta * vid,
        } | kd_term(self.kd_weight, s_out, t_out, self.temperature)


class VariationalRegressor(nn.Module):
    """A student map's predicted teacher map (mean) and per-channel variance."""

    def __init__(self, c_in: int, c_out: int, init_variance: float, eps: float) -> None:
        super().__init__()
        if init_variance <= eps:
            raise ValueError(f"VID init_variance must exceed eps ({eps}), got {init_variance}")
        self.mean = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 1, bias=False),
        )
        start = math.log(math.expm1(init_variance - eps))  # softplus⁻¹(init_variance − eps)
        self.variance_param = nn.Parameter(torch.full((c_out,), start))
        self.eps = eps

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        variance = F.softplus(self.variance_param.float()) + self.eps
        return self.mean(x), variance[None, :, None, None]


def gaussian_nll(mean: Tensor, variance: Tensor, target: Tensor) -> Tensor:
    """mean(½((μ − t)²/σ² + log σ²)): the Gaussian negative log-likelihood less its constant."""
    return (0.5 * ((mean - target) ** 2 / variance + torch.log(variance))).mean()
