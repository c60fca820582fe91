"""Deployment cost of a network: parameters and FLOPs (fvcore: one multiply-add = one flop)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from torch import nn

FLOP_CONVENTION = "fvcore: one multiply-add counts as one flop (so GFLOPs = GMACs)"


@dataclass
class Cost:
    params: int
    flops: int  # per image, fvcore convention
    unsupported_ops: dict[str, int]  # ops fvcore could not count (their cost is missing)


class LogitsOnly(nn.Module):
    """Trace helper: fvcore's jit tracer needs tensor outputs, not ``Output``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure_cost(model: nn.Module, image_shape: tuple[int, int, int]) -> Cost:
    """Parameters and per-image FLOPs of ``model`` (evaluated on a CPU copy, batch 1, eval mode)."""
    probe = LogitsOnly(model).eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, *image_shape, device=device)
    logging.getLogger("fvcore.nn.jit_handles").setLevel(logging.ERROR)
    was_training = model.training
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore's import uses torch.jit.script
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(probe, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = int(analysis.total())
        unsupported = dict(analysis.unsupported_ops())
    model.train(was_training)
    return Cost(count_params(model), flops, unsupported)
