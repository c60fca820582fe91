"""A run's optimiser and learning-rate schedule (``train.optimizer``, ``train.schedule``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from kdbench.config import RunConfig

LR_SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("adamw", "sgd")


def make_optimizer(params: list[nn.Parameter], cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True
        )
    # fused: one kernel for all parameters (on CPU 3-4x faster than the default for-loop)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)


def lr_factor(t, epoch: int) -> float:
    """Learning-rate multiplier at ``epoch`` (0-based) for the configured schedule."""
    if t.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / max(t.epochs, 1)))
    if t.schedule == "step":
        return t.gamma ** sum(epoch >= m for m in t.milestones)
    return 1.0


def set_lr(optimizer: torch.optim.Optimizer, t, epoch: int) -> None:
    for group in optimizer.param_groups:
        group["lr"] = t.lr * lr_factor(t, epoch)
