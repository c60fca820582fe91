"""KD with logit standardisation (Sun et al., CVPR 2024): Hinton's KD between z-scored logits."""

from __future__ import annotations

import warnings

import torch.nn.functional as F
from torch import Tensor

from kdbench.method import Context, Method
from kdbench.methods.common import kd_loss, standardize_logits
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"


@METHODS.register("ls-kd")
class LogitStandardizedKD(Method):
    description = "KD with logit standardisation (Sun et al. 2024): CE + T²·KL of z-scored logits"

    def __init__(
        self,
        ctx: Context,
        *,
        temperature: float = 2.0,
        ce_weight: float = 0.1,
        kd_weight: float = 9.0,
    ) -> None:
        """Loss: ``ce_weight · CE(s, y) + kd_weight · T² · KL(softmax(ẑ_t/T) ‖ softmax(ẑ_s/T))``
        with ``ẑ = (z − mean(z)) / (1e-7 + std(z))`` per sample (unbiased std), as
        torchdistill's ``LogitStdKDLoss(alpha=ce_weight, beta=kd_weight)`` and the paper's code
        (sunshangquan/logit-standardization-KD ``mdistiller/distillers/KD.py``). The CE reads the
        raw logits.

        - ``temperature``: the base temperature T, applied to the z-scored logits (so each
          sample's effective temperature is T times its logits' std).
        - ``ce_weight``: weight of the cross-entropy on the labels.
        - ``kd_weight``: weight of the T²-scaled KL term.

        Defaults: the paper's CIFAR-100 recipe for KD+LS (``--logit-stand --base-temp 2
        --kd-weight 9`` with the repository's KD CE weight 0.1, ``mdistiller/engine/cfg.py``).

        On two classes (SynthFF) both z-scored rows are ``±(1/√2, −1/√2)`` up to the 1e-7 in
        the std, whatever the logits: the KD term only says which class the teacher prefers,
        and its gradient passes through that 1e-7 alone, as ``1e-7 / gap²`` of the student's
        logit gap: nothing on confident samples, very large near the decision boundary, where it
        pushes the gap across to the teacher's side (warns; compare it on CIFAR-100)."""
        super().__init__(ctx)
        self.temperature, self.ce_weight, self.kd_weight = temperature, ce_weight, kd_weight
        if ctx.num_classes == 2:
            warnings.warn(
                "ls-kd on 2 classes: z-scored logits are ±1/√2 whatever the logits, so its KD "
                "term acts only through the std's 1e-7: nothing on confident samples, a large "
                "push across the decision boundary near it",
                stacklevel=2,
            )

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        student = standardize_logits(s_out.logits.float())
        teacher = standardize_logits(t_out.logits.detach().float())
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "kd": self.kd_weight * kd_loss(student, teacher, self.temperature),
        }
