"""DIST (Huang et al., NeurIPS 2022): match the relations of teacher and student predictions, by
Pearson correlation across classes (inter-class) and across the batch (intra-class)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdbench.method import Context, Method
from kdbench.output import Output
from kdbench.registry import METHODS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"


@METHODS.register("dist")
class DIST(Method):
    description = "DIST (Huang et al. 2022): CE + Pearson-correlation match over classes and batch"

    def __init__(
        self,
        ctx: Context,
        *,
        beta: float = 2.0,
        gamma: float = 2.0,
        temperature: float = 4.0,
        ce_weight: float = 1.0,
    ) -> None:
        """Loss: ``ce_weight · CE + T² · (β · inter + γ · intra)``, with ``p = softmax(z / T)``
        of student and teacher, ``inter = 1 − mean_b ρ(p_s[b, :], p_t[b, :])`` and
        ``intra = 1 − mean_c ρ(p_s[:, c], p_t[:, c])``, ρ the Pearson correlation.

        - ``beta``: weight of the inter-class relation (each sample's prediction over classes).
        - ``gamma``: weight of the intra-class relation (each class's predictions over the batch).
        - ``temperature``: T of both softmaxes; the terms are scaled by T².
        - ``ce_weight``: weight of the cross-entropy on the labels.

        Defaults: the official CIFAR-100 recipe (hunto/image_classification_sota
        ``configs/strategies/distill/dist_cifar.yaml``: ``kd: dist_t4``, ``kd_loss_weight: 2``,
        ``ori_loss_weight: 1``, i.e. ``DIST(beta=1, gamma=1, tau=4)`` times 2): β = γ = 2, T = 4,
        CE 1. The correlation is torch's cosine similarity of the centred vectors (eps 1e-8 on
        each norm, as torchdistill's ``DISTLoss``; the official code adds it to their product).

        On two classes (SynthFF) a sample's two centred probabilities are ``(d, −d)``: their
        correlation with the teacher's is ±1 whatever the logits, so the inter-class term passes
        no gradient, and only the intra-class term (over a batch of more than two) teaches."""
        super().__init__(ctx)
        self.beta, self.gamma, self.temperature = beta, gamma, temperature
        self.ce_weight = ce_weight

    def losses(self, batch: dict, s_out: Output, t_out: Output | None) -> dict[str, Tensor]:
        p_s = F.softmax(s_out.logits.float() / self.temperature, dim=1)
        p_t = F.softmax(t_out.logits.detach().float() / self.temperature, dim=1)
        scale = self.temperature**2
        return {
            "ce": self.ce_weight * F.cross_entropy(s_out.logits, batch["label"]),
            "inter": self.beta * scale * relation_loss(p_s, p_t),
            "intra": self.gamma * scale * relation_loss(p_s.T, p_t.T),
        }


def relation_loss(a: Tensor, b: Tensor) -> Tensor:
    """``1 − mean`` over rows of the Pearson correlation of the rows of ``a`` and ``b``."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return 1 - F.cosine_similarity(a, b, dim=1, eps=1e-8).mean()
