"""The student alone, trained with cross-entropy: the baseline every method is compared to."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdbench.method import Method
from kdbench.output import Output
from kdbench.registry import METHODS


@METHODS.register("vanilla")
class Vanilla(Method):
    description = "No distillation: cross-entropy on the labels (also how teachers are trained)"
    needs_teacher = False

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(s_out.logits, batch["label"])}
