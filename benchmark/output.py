"""The one thing every network returns: logits plus named features; and its classifier head."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn


@dataclass
class Output:
    """A network's answer.

    ``logits``: ``[B, C]``. ``features``: named tensors, e.g. ``stage1..stageN``
    (``[B, C, H, W]``) and ``pooled`` (``[B, D]``) for single-branch models; ``spatial.*``,
    ``frequency.*`` and ``fused`` for the dual-branch teacher. Methods address features by name.
    """

    logits: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)

    def feature(self, name: str) -> Tensor:
        """The feature ``name``, or an error that lists the names this network has."""
        if name not in self.features:
            from kdbench.registry import unknown_message

            raise KeyError(unknown_message("feature", name, self.features))
        return self.features[name]


@dataclass(frozen=True)
class Head:
    """A network's classifier as a module of its own: ``module(maps)`` gives the network's logits
    from the channel-wise concatenation of its features ``maps`` (each ``[B, C_i, H, W]``).

    Models that have one return it from ``classifier_head()``; methods that reuse a classifier
    (SimKD) get the teacher's and the student's in ``Context``.
    """

    maps: tuple[str, ...]
    module: nn.Module
