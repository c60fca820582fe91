"""Decoupled knowledge distillation (Zhao et al., CVPR 2022): KD split into a target-class term
(TCKD) and a non-target-class term (NCKD), weighted separately."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from kdbench.method import Context, Method
from kdbench.methods.common import standardize_logits
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"


@METHODS.register("dkd")
class DKD(Method):
    description = "DKD (Zhao et al. 2022): CE + target (TCKD) and non-target (NCKD) KD, warmed up"

    def __init__(
        self,
        ctx: Context,
        *,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        ce_weight: float = 1.0,
        warmup: float = 20 / 240,
        logit_standardize: bool = False,
    ) -> None:
        """Loss: ``ce_weight · CE + w(epoch) · (α · TCKD + β · NCKD)``, both terms T²-scaled KL
        divergences averaged over the batch, as mdistiller's ``dkd_loss``.

        - ``alpha``: weight of TCKD, the KL between the teacher's and the student's binary
          (target, all other classes) probabilities at temperature T.
        - ``beta``: weight of NCKD, the KL between their distributions over the non-target
          classes only (renormalised).
        - ``temperature``: T, shared by both terms.
        - ``ce_weight``: weight of the cross-entropy on the labels.
        - ``warmup``: the KD terms' linear warm-up, as a fraction of the run's epochs:
          ``w = min((epoch + 1) / (warmup · total_epochs), 1)`` with 0-based epochs, constant
          within an epoch (mdistiller's ``min(epoch / WARMUP, 1)``, 1-based); 0 turns it off.
        - ``logit_standardize``: z-score student and teacher logits before the temperature
          (Sun et al. 2024, their ``dkd_loss(..., logit_stand=True)``).

        Defaults: mdistiller's CIFAR-100 recipe (``mdistiller/engine/cfg.py`` and
        ``configs/cifar100/dkd/res32x4_res8x4.yaml``): CE 1, α 1, β 8, T 4, warm-up 20 of 240
        epochs, made relative so that short runs warm up over the same share of their schedule.
        The logit-standardisation recipe (``--logit-stand --base-temp 2 --kd-weight 9`` in
        sunshangquan/logit-standardization-KD ``tools/train.py``) is
        ``logit_standardize: true, alpha: 9, beta: 72, temperature: 2``.

        On two classes (SynthFF) the non-target distribution has a single class: NCKD is exactly
        0 and β has no effect, and TCKD is Hinton's KD itself. With ``logit_standardize`` on two
        classes both z-scored rows are ``±(1/√2, −1/√2)`` up to the std's 1e-7, so TCKD acts
        only through it, as ``ls-kd`` does there (warns; measured on the ``zoo`` preset: test
        AUC 53.2 ± 6.2 against vanilla's 63.9 ± 4.8, 5 seeds)."""
        super().__init__(ctx)
        self.alpha, self.beta, self.temperature = alpha, beta, temperature
        self.ce_weight = ce_weight
        self.warmup_epochs = warmup * ctx.total_epochs
        self.logit_standardize = logit_standardize
        self.epoch = 0
        if logit_standardize and ctx.num_classes == 2:
            warnings.warn(
                "dkd with logit_standardize on 2 classes: z-scored logits are ±1/√2 whatever "
                "the logits, so TCKD acts only through the std's 1e-7: nothing on confident "
                "samples, a large push across the decision boundary near it",
                stacklevel=2,
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def warmup_weight(self) -> float:
        """The KD terms' weight in the current epoch (mdistiller's linear warm-up)."""
        if self.warmup_epochs <= 0:
            return 1.0
        return min((self.epoch + 1) / self.warmup_epochs, 1.0)

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        student, teacher = s_out.logits, t_out.logits.detach()
        if self.logit_standardize:
            student, teacher = standardize_logits(student), standardize_logits(teacher)
        tckd, nckd = dkd_terms(student, teacher, batch["label"], self.temperature)
        weight = self.warmup_weight()
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "tckd": weight * self.alpha * tckd,
            "nckd": weight * self.beta * nckd,
        }


def dkd_terms(
    student: Tensor, teacher: Tensor, labels: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """``(TCKD, NCKD)``, each ``T² · KL(teacher ‖ student)`` averaged over the batch: over the
    binary (target, rest) split, and over the non-target classes renormalised."""
    s, t = student.float() / temperature, teacher.float() / temperature
    target = F.one_hot(labels, s.shape[1]).bool()
    others = s.shape[1] - 1
    s_rest, t_rest = s[~target].view(-1, others), t[~target].view(-1, others)
    tckd = kl(binary_log_probs(s, target, s_rest), binary_log_probs(t, target, t_rest))
    nckd = kl(F.log_softmax(s_rest, dim=1), F.log_softmax(t_rest, dim=1))
    return tckd * temperature**2, nckd * temperature**2


def binary_log_probs(logits: Tensor, target: Tensor, rest: Tensor) -> Tensor:
    """``[B, 2]``: log p(target) and log p(any other class), from logits in log space."""
    both = torch.cat([logits[target].view(-1, 1), torch.logsumexp(rest, 1, keepdim=True)], dim=1)
    return both - torch.logsumexp(logits, dim=1, keepdim=True)


def kl(log_p_student: Tensor, log_p_teacher: Tensor) -> Tensor:
    """KL(teacher ‖ student) summed over classes, averaged over the batch."""
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
