"""Pre-activation stage features on request: ``stageK.preact``, the input of stage K's last
ReLU (its output is ``stageK``), as OFD reads them; and the batch norm that feeds that ReLU,
whose affine parameters give OFD's margin.

A model that supports them has ``preact_points()``: ``{"stageK": PreactPoint}``; after
``enable_preact(model)`` its forward adds every ``stageK.preact`` to its features. The points
are hooks, so a model without the request pays nothing.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn


class PreactPoint(NamedTuple):
    """Where a stage's pre-activation is: the final activation module (its input is the
    pre-activation) and the batch norm whose output that input is (plus, in a residual block,
    the shortcut)."""

    activation: nn.Module
    norm: nn.BatchNorm2d


class PreactUnsupported(ValueError):
    """A model that cannot give pre-activation features."""


def record(points: dict[str, PreactPoint]) -> dict[str, Tensor]:
    """Hook every point; the returned dict holds each stage's last pre-activation (a copy:
    the activations run in place)."""
    seen: dict[str, Tensor] = {}
    for stage, point in points.items():
        point.activation.register_forward_pre_hook(keeper(seen, f"{stage}.preact"))
    return seen


def keeper(seen: dict[str, Tensor], name: str):
    def keep(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        seen[name] = inputs[0].clone()

    return keep


def enable_preact(model: nn.Module) -> None:
    """Make ``model`` return ``stageK.preact`` features, or raise ``PreactUnsupported``."""
    enable = getattr(model, "enable_preact", None)
    if enable is None:
        raise PreactUnsupported(f"{type(model).__name__} has no pre-activation features")
    enable()


def preact_norms(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    """``{"stageK.preact": the batch norm before that ReLU}`` (prefixed for the dual branch)."""
    return model.preact_norms()
