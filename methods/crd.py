"""Contrastive representation distillation (Tian et al. 2020) with momentum memory banks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.method import Context, Method
from kdbench.methods.common import kd_term, teacher_output
from kdbench.methods.selection import embedding_feature
from kdbench.output import Output
from kdbench.registry import METHODS, unknown_message

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"

EPS = 1e-7
NEGATIVES = ("other-class", "uniform")


@METHODS.register("crd")
class CRD(Method):
    description = "CRD (Tian et al. 2020): NCE between student and teacher embeddings, memory banks"

    def __init__(
        self,
        ctx: Context,
        *,
        student_feature: str = "pooled",
        teacher_feature: str = "auto",
        dim: int = 128,
        k: int = 16384,
        nce_t: float = 0.07,
        nce_m: float = 0.5,
        beta: float = 0.8,
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
        negatives: str = "other-class",
    ) -> None:
        """``teacher_feature`` auto: ``fused`` for the dual-branch teacher, else ``pooled``.
        ``k`` negatives per sample, at most ``num_samples - 1``, drawn with replacement from the
        samples of other classes (``other-class``, the references' ``exact`` mode; it needs
        ``ctx.train_labels``) or from all other samples (``uniform``). ``nce_t``/``nce_m``: the
        NCE temperature and the memory banks' momentum. Loss: CE + β·CRD (+ kd_weight·KD).

        Embeddings, their normalisation and the NCE run in float32, outside autocast.

        The memory banks start random and each row moves towards its sample's embedding only
        when that sample is in a batch, once an epoch: the contrast is against noise at first
        and against embeddings up to an epoch old later, so CRD needs many epochs (the
        references train 240 on CIFAR-100) and gives little signal in a short run."""
        super().__init__(ctx)
        teacher = teacher_output(ctx, "crd")
        if ctx.num_samples < 2:
            raise ValueError(f"CRD needs at least 2 training samples, got {ctx.num_samples}")
        order, start, count = exclusion_blocks(negative_groups(ctx, negatives))
        self.register_buffer("negative_order", order, persistent=False)
        self.register_buffer("negative_start", start, persistent=False)
        self.register_buffer("negative_count", count, persistent=False)
        if teacher_feature == "auto":
            teacher_feature = embedding_feature(teacher)
        self.student_feature = student_feature
        self.teacher_feature = teacher_feature
        self.embed_s = nn.Linear(ctx.student.feature(student_feature).flatten(1).shape[1], dim)
        self.embed_t = nn.Linear(teacher.feature(teacher_feature).flatten(1).shape[1], dim)
        self.num_samples = ctx.num_samples
        self.k = min(k, ctx.num_samples - 1)
        self.nce_t = nce_t
        self.nce_m = nce_m
        self.beta = beta
        self.ce_weight = ce_weight
        self.kd_weight = kd_weight
        self.temperature = temperature
        self.register_buffer("student_bank", random_bank(ctx.num_samples, dim))
        self.register_buffer("teacher_bank", random_bank(ctx.num_samples, dim))
        # NCE normalisation constants, set from the first batch (-1: not yet)
        self.register_buffer("z_student", torch.tensor(-1.0))
        self.register_buffer("z_teacher", torch.tensor(-1.0))

    def teacher_features(self) -> list[str]:
        return [self.teacher_feature]

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        index = batch["index"].to(self.student_bank.device)
        s_feature = s_out.feature(self.student_feature)
        t_feature = t_out.feature(self.teacher_feature).detach()
        with torch.autocast(s_feature.device.type, enabled=False):
            v_s = F.normalize(self.embed_s(s_feature.float().flatten(1)))
            v_t = F.normalize(self.embed_t(t_feature.float().flatten(1)))
            rows = torch.cat([index[:, None], self.sample_negatives(index)], dim=1)
            p_s = self.contrast(self.teacher_bank, rows, v_s, self.z_student)
            p_t = self.contrast(self.student_bank, rows, v_t, self.z_teacher)
            crd = nce_loss(p_s, self.num_samples) + nce_loss(p_t, self.num_samples)
            if self.training:
                self.update_banks(index, v_s.detach(), v_t.detach())
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "crd": self.beta * crd,
        } | kd_term(self.kd_weight, s_out, t_out, self.temperature)

    def sample_negatives(self, index: Tensor) -> Tensor:
        """``[B, k]`` indices drawn uniformly, with replacement, from outside each sample's
        group: a position among the ``num_samples - count`` outside its block of
        ``negative_order``, shifted past the block."""
        start, count = self.negative_start[index, None], self.negative_count[index, None]
        outside = self.num_samples - count
        draw = torch.rand(len(index), self.k, device=index.device) * outside
        draw = torch.minimum(draw.long(), outside - 1)
        return self.negative_order[draw + count * (draw >= start)]

    def contrast(self, bank: Tensor, rows: Tensor, anchor: Tensor, z: Tensor) -> Tensor:
        """``exp(bank[rows] · anchor / T) / Z``: ``[B, 1 + k]``, the positive first."""
        scores = torch.exp(bank_dot(bank, rows, anchor) / self.nce_t)
        if z < 0:
            z.copy_(scores.detach().mean() * self.num_samples)
        return scores / z

    @torch.no_grad()
    def update_banks(self, index: Tensor, v_s: Tensor, v_t: Tensor) -> None:
        """Move each sample's bank rows towards its new embeddings: normalize(m·old + (1−m)·new)."""
        for bank, v in ((self.student_bank, v_s), (self.teacher_bank, v_t)):
            bank.index_copy_(0, index, F.normalize(self.nce_m * bank[index] + (1 - self.nce_m) * v))


def negative_groups(ctx: Context, negatives: str) -> Tensor:
    """The group of each training sample that its negatives must come from outside of: its
    class (``other-class``) or itself alone (``uniform``)."""
    if negatives not in NEGATIVES:
        raise ValueError(unknown_message("negatives mode", negatives, NEGATIVES))
    if negatives == "uniform":
        return torch.arange(ctx.num_samples)
    labels = ctx.train_labels
    if labels is None or len(labels) != ctx.num_samples:
        got = "none" if labels is None else len(labels)
        raise ValueError(
            f"CRD negatives='other-class' needs the label of each of the {ctx.num_samples} "
            f"training samples (got {got}); for a dataset without 'labels', use 'uniform'"
        )
    if len(labels.unique()) < 2:
        raise ValueError("CRD negatives='other-class' needs at least 2 classes in training")
    return labels.long()


def exclusion_blocks(groups: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The samples sorted by group, and for each sample the start and length of its group's
    block in that order."""
    order = torch.argsort(groups, stable=True)
    values, counts = torch.unique(groups, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    which = torch.searchsorted(values, groups)
    return order, starts[which], counts[which]


def bank_dot(bank: Tensor, rows: Tensor, anchor: Tensor) -> Tensor:
    """``bank[rows] · anchor`` for ``rows [B, n]``: ``[B, n]``. When ``n`` is not much smaller
    than the bank, one ``anchor @ bank.T`` matmul and a gather beat copying ``B·n`` bank rows
    (on 2 CPU cores, B = 64, a 1,024-row bank, n = 1,024: 0.2 ms instead of 16 ms). The bank
    is cloned because the step updates it in place before the backward pass needs it."""
    if bank.shape[0] <= 8 * rows.shape[1]:
        return torch.gather(anchor @ bank.clone().T, 1, rows)
    return torch.bmm(bank[rows], anchor[:, :, None]).squeeze(2)


def random_bank(num_samples: int, dim: int) -> Tensor:
    """Rows uniform in ±1/sqrt(dim/3), as in the reference, then L2-normalised."""
    stdv = 1.0 / math.sqrt(dim / 3)
    return F.normalize(torch.rand(num_samples, dim).mul_(2 * stdv).sub_(stdv))


def nce_loss(scores: Tensor, num_samples: int) -> Tensor:
    """The NCE loss on ``[B, 1 + k]`` scores (positive first), noise density Pn = 1/num_samples:
    −(Σ log(P_pos / (P_pos + k·Pn)) + Σ log(k·Pn / (P_neg + k·Pn))) / B."""
    noise = (scores.shape[1] - 1) / num_samples
    log_pos = torch.log(scores[:, 0] / (scores[:, 0] + noise + EPS))
    log_neg = torch.log(noise / (scores[:, 1:] + noise + EPS))
    return -(log_pos.sum() + log_neg.sum()) / scores.shape[0]
