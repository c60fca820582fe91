"""An exponential moving average of a model's weights (``train.ema``), as timm's ``ModelEma``:
the averaged copy is what a run evaluates and saves, the live model what the optimizer trains.

Late in a schedule the live weights keep drifting (Adam's steps are about ``lr`` whatever the
gradient), so on a small validation split the metric moves from epoch to epoch although the
model no longer improves; the average damps that drift.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """``average ← d·average + (1 − d)·live`` after every optimizer step, for every floating
    parameter and buffer (BatchNorm's running statistics too); integer buffers are copied.

    ``d`` warms up as ``min(decay, (1 + t) / (10 + t))`` at step ``t``, so the first steps are
    not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.steps = 0
        mine, theirs = self.model.state_dict().values(), model.state_dict().values()
        pairs = list(zip(mine, theirs, strict=True))
        self.averaged = [a for a, _ in pairs if a.is_floating_point()]
        self.live = [m for a, m in pairs if a.is_floating_point()]
        self.others = [(a, m) for a, m in pairs if not a.is_floating_point()]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.steps) / (10 + self.steps))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the live model's current weights in (call after each optimizer step)."""
        self.steps += 1
        torch._foreach_lerp_(self.averaged, self.live, 1.0 - self.current_decay())
        for averaged_tensor, live_tensor in self.others:
            averaged_tensor.copy_(live_tensor)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.steps = state["steps"]
