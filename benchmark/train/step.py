"""One training step (student forward, the method's losses, backward, optimizer step) and the
check that it stayed finite."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from kdbench.train.distributed import any_true, reduce_gradients
from kdbench.train.precision import autocast

if TYPE_CHECKING:
    from kdbench.train.setup import Setup


def train_step(setup: Setup, batch: dict, share: float = 1.0) -> dict[str, torch.Tensor]:
    """One optimizer step on ``batch``; ``share``: its fraction of the global batch, when the
    run's processes each hold a part of it (their gradients are then summed, so weighted)."""
    t_out = setup.teacher_outputs(batch) if setup.teacher_outputs else None
    with autocast(setup.device, setup.dtype):
        s_out = setup.student(batch["image"])
        s_out = replace(s_out, logits=s_out.logits.float())  # losses in fp32 under bf16
        losses = setup.method.losses(batch, s_out, t_out)
    problem = not_finite(losses, s_out.logits)
    if any_true(problem is not None):  # every process stops, not only the one that saw it
        raise FloatingPointError(problem or "not finite on another of the run's processes")
    setup.optimizer.zero_grad(set_to_none=True)
    setup.method.backward(losses, s_out)
    reduce_gradients(setup.optimizer_params(), share)
    setup.optimizer.step()
    if setup.average:
        setup.average.update()
    return losses


def not_finite(losses: dict[str, torch.Tensor], logits: torch.Tensor) -> str | None:
    """What is not finite: the first loss term (or the logits); ``None`` when all are."""
    for name, value in losses.items():
        if not torch.isfinite(value):
            return f"loss term {name!r} is {float(value)}"
    if not torch.isfinite(logits).all():
        return "the student's logits are not finite"
    return None


class DivergedError(FloatingPointError):
    """Training produced a non-finite loss or output; the message says at which epoch/step."""
