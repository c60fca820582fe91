"""OFD (Heo et al. ICCV 2019, "A Comprehensive Overhaul of Feature Distillation"): pre-ReLU
features, a margin from the teacher's batch norm, and a partial L2 that ignores what ReLU hides."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.method import Context, Method
from kdbench.methods.common import stage_names, teacher_output
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"

MIN_SIDE = 4  # auto pairs compare maps of 4×4 or more (the README's AT finding)


@METHODS.register("ofd")
class OFD(Method):
    description = "OFD (Heo et al. 2019): pre-ReLU features, BN margins, partial L2 + CE"
    needs_preact = True

    def __init__(
        self,
        ctx: Context,
        *,
        pairs: list[list[str]] | str = "auto",
        feat_weight: float = 1e-3,
        ce_weight: float = 1.0,
        kernel: int = 1,
    ) -> None:
        """``pairs``: ``[[student_stage, teacher_stage], ...]`` (stage names; their ``.preact``
        features are compared), or ``auto``: the student's stages after the stem aligned with
        the teacher's from the deepest down (mdistiller's ``_align_list``; the dual-branch
        teacher's ``spatial.`` branch), keeping pairs whose student map is at least 4×4 (so
        resnet10t at 64 px: stage2–stage4). ``feat_weight``: of the summed partial L2 (each
        pair's loss summed over C·H·W, averaged over the batch, the deepest pair weighing 1 and
        each shallower one half the next); 1e-3 is the reference code's ``/ 1000`` (mdistiller's
        CIFAR FEAT_WEIGHT). ``kernel``: the connectors' conv (conv + BN, He init). Loss:
        ``ce_weight · CE + feat_weight · Σ``.

        The margin of each teacher channel is the mean of its pre-ReLU response where negative,
        for a Gaussian with the mean and std of the batch norm before that ReLU (its bias and
        |weight|), or −3·std where it is almost never negative; the teacher's pre-activation is
        raised to it, and the student is not penalised below a target that is ≤ 0."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "ofd")
        self.pairs = auto_pairs(ctx.student, teacher) if pairs == "auto" else pairs
        if not self.pairs:
            raise ValueError(
                f"ofd: no stage pair has a student map of {MIN_SIDE}×{MIN_SIDE} or more"
            )
        norms = ctx.teacher_preact_norms or {}
        self.connectors = nn.ModuleList()
        for i, (s_name, t_name) in enumerate(self.pairs):
            s_map, t_map = (
                ctx.student.feature(f"{s_name}.preact"),
                teacher.feature(f"{t_name}.preact"),
            )
            self.connectors.append(connector(s_map.shape[1], t_map.shape[1], kernel))
            if f"{t_name}.preact" not in norms:
                raise ValueError(f"ofd: the teacher has no batch norm before {t_name}.preact")
            self.register_buffer(f"margin{i}", bn_margin(norms[f"{t_name}.preact"]))
        self.feat_weight = feat_weight
        self.ce_weight = ce_weight

    def teacher_features(self) -> list[str]:
        return [f"{t}.preact" for _, t in self.pairs]

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        total = s_out.logits.new_zeros(())
        n = len(self.pairs)
        for i, ((s_name, t_name), conv) in enumerate(zip(self.pairs, self.connectors, strict=True)):
            source = conv(s_out.feature(f"{s_name}.preact"))
            target = F.adaptive_avg_pool2d(t_out.feature(f"{t_name}.preact"), source.shape[-2:])
            margin = getattr(self, f"margin{i}")
            total = total + partial_l2(source.float(), target.detach().float(), margin) / 2 ** (
                n - i - 1
            )
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "ofd": self.feat_weight * total,
        }


def auto_pairs(student: Output, teacher: Output) -> list[list[str]]:
    """Stages after the stem, aligned from the deepest, with student maps ≥ MIN_SIDE."""
    s_stages, t_stages = stage_names(student)[1:], stage_names(teacher)[1:]
    count = min(len(s_stages), len(t_stages))
    pairs = zip(s_stages[-count:], t_stages[-count:], strict=True)
    return [[s, t] for s, t in pairs if min(student.feature(s).shape[-2:]) >= MIN_SIDE]


def connector(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Conv (no bias, He-normal init over fan-out) + BN (weight 1, bias 0), as OFD's code."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=(kernel - 1) // 2, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (kernel * kernel * c_out)))
    return nn.Sequential(conv, nn.BatchNorm2d(c_out))


def bn_margin(bn: nn.BatchNorm2d) -> Tensor:
    """``[1, C, 1, 1]``: E[x | x < 0] for x ~ N(bias, |weight|²) per channel, where
    P(x < 0) > 0.001; else −3·|weight|."""
    std = bn.weight.detach().abs().double().clamp_min(1e-12)
    mean = bn.bias.detach().double()
    below = torch.special.ndtr(-mean / std)
    gaussian = -std * torch.exp(-((mean / std) ** 2) / 2) / math.sqrt(2 * math.pi) / below + mean
    margin = torch.where(below > 0.001, gaussian, -3 * std)
    return margin.float().view(1, -1, 1, 1)


def partial_l2(source: Tensor, target: Tensor, margin: Tensor) -> Tensor:
    """OFD's distance: the target raised to the margin; no loss where the student is below a
    target that is ≤ 0 (ReLU hides it). Summed over C·H·W, averaged over the batch."""
    target = torch.maximum(target, margin)
    mask = (source > target) | (target > 0)
    return ((source - target) ** 2 * mask).sum() / source.shape[0]
