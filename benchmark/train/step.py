"""One training step (student forward, the method's losses, backward, optimizer step) and the
check that it stayed finite."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kdbench.output import Output
from kdbench.train.precision import autocast

if TYPE_CHECKING:
    from kdbench.train.setup import Setup


def train_step(setup: Setup, batch: dict) -> dict[str, torch.Tensor]:
    t_out = setup.teacher_outputs(batch) if setup.teacher_outputs else None
    with autocast(setup.device, setup.dtype):
        s_out = setup.student(batch["image"])
        s_out = Output(s_out.logits.float(), s_out.features)  # losses in fp32 under bf16
        losses = setup.method.losses(batch, s_out, t_out)
    check_finite(losses, s_out.logits)
    setup.optimizer.zero_grad(set_to_none=True)
    setup.method.backward(losses, s_out)
    setup.optimizer.step()
    if setup.average:
        setup.average.update()
    return losses


def check_finite(losses: dict[str, torch.Tensor], logits: torch.Tensor) -> None:
    """Raise ``FloatingPointError`` naming the first loss term (or the logits) not finite."""
    for name, value in losses.items():
        if not torch.isfinite(value):
            raise FloatingPointError(f"loss term {name!r} is {float(value)}")
    if not torch.isfinite(logits).all():
        raise FloatingPointError("the student's logits are not finite")


class DivergedError(FloatingPointError):
    """Training produced a non-finite loss or output; the message says at which epoch/step."""
