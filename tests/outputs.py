"""Hand-built network outputs for the method tests, with the layout a real network declares."""

from __future__ import annotations

from torch import Tensor

from kdbench.output import Output, stages_of

BRANCHES = ("spatial", "frequency")


def dual_output(logits: Tensor, features: dict[str, Tensor]) -> Output:
    """An ``Output`` with the dual-branch teacher's layout (``kdbench.models.dual_branch``) for
    features named like that teacher's: each ``<branch>.stageK`` set a branch, the first branch
    the main path (none: ``stageK``), ``fused`` the embedding."""
    branches = {
        branch: tuple(stages_of(features, f"{branch}."))
        for branch in BRANCHES
        if any(name.startswith(f"{branch}.stage") for name in features)
    }
    main = next(iter(branches.values()), None)
    return Output(logits, features, main, "fused", branches)
