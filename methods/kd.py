"""Hinton et al. (2015) knowledge distillation: soft teacher logits at temperature T."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdbench.method import Context, Method
from kdbench.methods.common import kd_loss
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "5999d000402a"


@METHODS.register("kd")
class KD(Method):
    """``(1 - alpha) · CE(s, y) + alpha · T² · KL(softmax(t/T) ‖ softmax(s/T))``.

    Defaults T=4, alpha=0.9 as in RepDistiller's CIFAR-100 recipe.
    """

    description = "Logit KD (Hinton et al. 2015): CE + T²·KL to the teacher's soft labels"

    def __init__(self, ctx: Context, *, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__(ctx)
        self.temperature = temperature
        self.alpha = alpha

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        ce = F.cross_entropy(s_out.logits, batch["label"])
        kd = kd_loss(s_out.logits, t_out.logits, self.temperature)
        return {"ce": (1 - self.alpha) * ce, "kd": self.alpha * kd}
