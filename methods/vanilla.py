"""The student alone, trained with cross-entropy: the baseline every method is compared to."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdbench.method import Context, Method
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "8d3393c39a3e"


@METHODS.register("vanilla")
class Vanilla(Method):
    """Cross-entropy on the labels. A model that exposes auxiliary heads as features named
    ``<part>.logits`` (the dual-branch teacher's ``aux_heads``) has each of them trained with
    cross-entropy too, their mean weighted by ``aux_weight`` (deep supervision)."""

    description = "No distillation: cross-entropy on the labels (also how teachers are trained)"
    needs_teacher = False

    def __init__(self, ctx: Context, *, aux_weight: float = 1.0) -> None:
        super().__init__(ctx)
        self.aux_weight = aux_weight

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        terms = {"ce": F.cross_entropy(s_out.logits, batch["label"])}
        aux = [v for k, v in s_out.features.items() if k.endswith(".logits")]
        if aux and self.aux_weight:
            ce = [F.cross_entropy(logits.float(), batch["label"]) for logits in aux]
            terms["aux"] = self.aux_weight * sum(ce) / len(ce)
        return terms
