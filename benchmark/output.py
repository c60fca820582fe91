"""The one thing every network returns: logits plus named features."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


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
