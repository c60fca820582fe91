"""Parity of the logit methods with their references, loss and gradients on the student's
logits, as ``test_parity.py`` does:

- ``ls-kd``: torchdistill's ``LogitStdKDLoss``.

Run with ``-s`` to print one ``parity | method | reference | max|Δ| loss | max|Δ| grad`` row per
case.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from test_parity import BATCH, CLASSES, assert_parity, io, leaf, loss_and_grads
from torch import Tensor
from torchdistill.losses.mid_level import LogitStdKDLoss

from kdbench.method import Context, Method, build_method
from kdbench.output import Output


def build(name: str, classes: int, params: dict, total_epochs: int = 1) -> Method:
    """``name`` on a ``classes``-way problem, its warnings silenced (tests that want them ask)."""
    logits = torch.zeros(2, classes)
    ctx = Context(Output(logits), Output(logits), classes, BATCH, total_epochs=total_epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_method(name, ctx, params)


def logits_and_labels(classes: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Student logits (a leaf), teacher logits at a larger scale, and labels."""
    g = torch.Generator().manual_seed(seed + 1)
    teacher = 3 * torch.randn(BATCH, classes, generator=g)
    labels = torch.randint(0, classes, (BATCH,), generator=g)
    return leaf(BATCH, classes, seed=seed), teacher, labels


# ---------------------------------------------------------------- KD with logit standardisation


def test_ls_kd_equals_torchdistill_logitstdkdloss() -> None:
    s, t, labels = logits_and_labels(CLASSES, seed=50)
    method = build("ls-kd", CLASSES, {"temperature": 2.0, "ce_weight": 0.1, "kd_weight": 9.0})
    terms = method.losses({"label": labels}, Output(s), Output(t))
    reference = LogitStdKDLoss("fc", "output", "fc", "output", temperature=2.0, alpha=0.1, beta=9)
    assert_parity(
        "ls-kd (T = 2, CE 0.1, KD 9) | torchdistill LogitStdKDLoss",
        loss_and_grads(terms["ce"] + terms["kd"], [s]),
        loss_and_grads(reference(io(fc=s), io(fc=t), labels), [s]),
    )


def test_ls_kd_on_two_classes_warns_and_its_kd_term_passes_no_gradient() -> None:
    s, t, labels = logits_and_labels(2, seed=51)
    ctx = Context(Output(torch.zeros(2, 2)), Output(torch.zeros(2, 2)), 2, BATCH)
    with pytest.warns(UserWarning, match="no gradient"):
        method = build_method("ls-kd", ctx, {})
    terms = method.losses({"label": labels}, Output(s), Output(t))
    assert float(torch.autograd.grad(terms["kd"], s)[0].abs().max()) < 1e-5
