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

    The layout, which methods read instead of guessing it from the names:

    - ``stages``: the main path's stage features, shallow to deep, that stage methods pair by
      depth; ``None`` (the default): the ``stageK`` features in K order.
    - ``embedding``: the penultimate vector the classifier reads (``pooled`` by default).
    - ``branches``: for a network of several branches, each branch's stage features, shallow
      to deep, by branch name; a branch's features are named ``<branch>.<feature>``.

    Only the dry forward that sizes a method (``Context``) needs the layout: the outputs that
    reach ``losses`` (a cached teacher's among them) may carry the features alone.
    """

    logits: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)
    stages: tuple[str, ...] | None = None
    embedding: str = "pooled"
    branches: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def feature(self, name: str) -> Tensor:
        """The feature ``name``, or an error that lists the names this network has."""
        if name not in self.features:
            from kdbench.registry import unknown_message

            raise KeyError(unknown_message("feature", name, self.features))
        return self.features[name]

    def stage_names(self) -> list[str]:
        """The main path's stage features, shallow to deep (``stages``, else ``stageK``)."""
        return list(self.stages) if self.stages is not None else stages_of(self.features)


def stages_of(features: dict[str, Tensor], prefix: str = "") -> list[str]:
    """``<prefix>stageK`` of ``features`` in depth order (``stageK.preact`` and the like left
    out); an error naming what there is when none."""
    head = prefix + "stage"
    stages = {
        int(name[len(head) :]): name
        for name in features
        if name.startswith(head) and name[len(head) :].isdigit()
    }
    if not stages:
        raise ValueError(f"no '{head}K' features to pick from (has: {', '.join(features)})")
    return [stages[k] for k in sorted(stages)]


@dataclass(frozen=True)
class Head:
    """A network's classifier as a module of its own: ``module(maps)`` gives the network's logits
    from the channel-wise concatenation of its features ``maps`` (each ``[B, C_i, H, W]``).

    Models that have one return it from ``classifier_head()``; methods that reuse a classifier
    (SimKD) get the teacher's and the student's in ``Context``.
    """

    maps: tuple[str, ...]
    module: nn.Module
