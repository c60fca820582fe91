"""Knowledge review (Chen et al. 2021): fused student stages, deep to shallow, match the teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.method import Context, Method
from kdbench.methods.common import feature_map, kd_term, teacher_output
from kdbench.methods.selection import pick_pairs, teacher_stages
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"

MAX_MID_CHANNELS = 512  # the references' cap on the fusion width
CONTEXT_LEVELS = (4, 2, 1)  # the hierarchical context loss's pooled sizes


@METHODS.register("reviewkd")
class ReviewKD(Method):
    description = "ReviewKD (Chen et al. 2021): attention-fused student stages, hierarchical MSE"

    def __init__(
        self,
        ctx: Context,
        *,
        pairs: list[list[str]] | str = "auto",
        beta: float = 5.0,
        warmup: float = 20 / 240,
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
    ) -> None:
        """``pairs``: ``[[student_feature, teacher_feature], ...]`` from shallow to deep (a
        vector such as ``pooled`` counts as a 1×1 map), or ``auto``: every student stage after
        the stem, each with the teacher stage at the same relative depth (the ``spatial.``
        branch of the dual-branch teacher), whose compared maps are 4×4 or more.

        Each pair has an attention-based fusion (ABF): a 1×1 conv + BN to ``min(512, C)``
        channels (C: the deepest student feature's), fused with the next deeper level's output
        (nearest-upsampled) by two sigmoid attention maps, then resized (nearest) to the
        teacher map's size and a 3×3 conv + BN to the teacher's channels; the deepest level has
        no fusion. Loss: the hierarchical context loss, Σ_pairs of the MSE at full size and at
        the average-pooled 4×4, 2×2 and 1×1 levels smaller than the map, weighted 1, ½, ¼, ⅛ and
        divided by the weights' sum. ``beta``: its weight, ramped linearly per epoch over the
        first ``warmup`` of the run's epochs (a fraction; 0: no ramp). ``ce_weight``: weight of
        the cross-entropy. ``kd_weight``: logit KD from the teacher's logits at
        ``temperature`` (0: none, as the references' default).

        Defaults: the ReviewKD CIFAR-100 recipe for resnet32x4 → resnet8x4 (official
        ``--kd-loss-weight 5.0``, mdistiller's ``res32x4_res8x4`` ``REVIEWKD_WEIGHT: 5.0``;
        warm-up 20 of 240 epochs, weight (epoch + 1)/20 as mdistiller). The references review
        the stages after the stem and the pooled feature (1×1) against the teacher's
        pre-activation maps; kdbench's networks expose post-ReLU stage outputs, which are the
        targets here. Changed for 64 px: auto compares maps of 4×4 or more (resnet10t:
        stage2–stage4; its 2×2 stage5 and the pooled feature are left out, the context levels
        still pool each map down to 1×1); add ``[pooled, pooled]`` (``spatial.pooled`` for the
        dual-branch teacher) as the last pair for the references' layout."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "reviewkd")
        self.pairs = pick_pairs(pairs, ctx.student, teacher, "ReviewKD", skip_stem=True, maps=False)
        s_channels = [feature_map(ctx.student, s).shape[1] for s, _ in self.pairs]
        t_channels = [feature_map(teacher, t).shape[1] for _, t in self.pairs]
        mid = min(MAX_MID_CHANNELS, s_channels[-1])
        last = len(self.pairs) - 1
        self.fusions = nn.ModuleList(
            AttentionFusion(c_s, mid, c_t, fuse=k < last)
            for k, (c_s, c_t) in enumerate(zip(s_channels, t_channels, strict=True))
        )
        self.beta = beta
        self.warmup_epochs = warmup * ctx.total_epochs
        self.ce_weight = ce_weight
        self.kd_weight, self.temperature = kd_weight, temperature
        self.epoch = 0

    def teacher_features(self) -> list[str]:
        return teacher_stages(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        targets = [feature_map(t_out, t_name).detach() for _, t_name in self.pairs]
        reviewed = self.review([feature_map(s_out, s_name) for s_name, _ in self.pairs], targets)
        hcl = sum(context_loss(s, t) for s, t in zip(reviewed, targets, strict=True))
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "reviewkd": self.beta * self.ramp() * hcl,
        } | kd_term(self.kd_weight, s_out, t_out, self.temperature)

    def review(self, students: list[Tensor], targets: list[Tensor]) -> list[Tensor]:
        """The fusions' outputs, shallow to deep, computed from the deepest level up."""
        outputs, residual = [], None
        for k in reversed(range(len(students))):
            out, residual = self.fusions[k](students[k], residual, targets[k].shape[2:])
            outputs.insert(0, out)
        return outputs

    def ramp(self) -> float:
        """The warm-up factor of the current epoch: min((epoch + 1) / warm-up epochs, 1)."""
        if self.warmup_epochs <= 0:
            return 1.0
        return min((self.epoch + 1) / self.warmup_epochs, 1.0)


class AttentionFusion(nn.Module):
    """ReviewKD's ABF: a student level, fused with the deeper levels' residual, to a teacher map."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, *, fuse: bool) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(c_in, c_mid, 1, bias=False), nn.BatchNorm2d(c_mid))
        self.expand = nn.Sequential(
            nn.Conv2d(c_mid, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
        )
        self.attention = nn.Sequential(nn.Conv2d(2 * c_mid, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.reduce[0].weight, a=1)
        nn.init.kaiming_uniform_(self.expand[0].weight, a=1)

    def forward(
        self, x: Tensor, residual: Tensor | None, size: torch.Size
    ) -> tuple[Tensor, Tensor]:
        """The output at the teacher's ``size`` and the fused map passed to the next level."""
        x = self.reduce(x)
        if self.attention is not None:
            residual = F.interpolate(residual, x.shape[2:], mode="nearest")
            weights = self.attention(torch.cat([x, residual], dim=1))
            x = x * weights[:, :1] + residual * weights[:, 1:]
        if x.shape[2:] != size:
            x = F.interpolate(x, size, mode="nearest")
        return self.expand(x), x


def context_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """The hierarchical context loss of one pair, in float32."""
    with torch.autocast(student.device.type, enabled=False):
        student, teacher = student.float(), teacher.float()
        loss, weight, total = F.mse_loss(student, teacher), 1.0, 1.0
        for level in CONTEXT_LEVELS:
            if level >= student.shape[2]:
                continue
            weight /= 2
            pooled_s = F.adaptive_avg_pool2d(student, level)
            pooled_t = F.adaptive_avg_pool2d(teacher, level)
            loss = loss + weight * F.mse_loss(pooled_s, pooled_t)
            total += weight
        return loss / total
