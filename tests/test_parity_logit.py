"""Parity of the logit methods (dkd, dist, ls-kd) with their references, loss and gradients on
the student's logits, as ``test_parity.py`` does:

- ``dkd``: torchdistill has no DKD; the reference is mdistiller's ``dkd_loss``
  (github.com/megvii-research/mdistiller ``mdistiller/distillers/DKD.py``) transcribed below, and
  for ``logit_standardize`` its copy with ``normalize`` (github.com/sunshangquan/
  logit-standardization-KD ``mdistiller/distillers/DKD.py``);
- ``dist``: torchdistill's ``DISTLoss``, and the official loss (github.com/hunto/
  image_classification_sota ``lib/models/losses/dist_kd.py``) transcribed below;
- ``ls-kd``: torchdistill's ``LogitStdKDLoss``.

Run with ``-s`` to print one ``parity | method | reference | max|Δ| loss | max|Δ| grad`` row per
case.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from test_parity import BATCH, CLASSES, assert_parity, io, leaf, loss_and_grads
from torch import Tensor
from torchdistill.losses.mid_level import DISTLoss, KDLoss, LogitStdKDLoss

from kdbench.method import Context, Method, build_method
from kdbench.output import Output


def build(name: str, classes: int, params: dict, total_epochs: int = 1, warns: str = "") -> Method:
    """``name`` on a ``classes``-way problem; it must warn with ``warns`` when one is given,
    else its warnings are silenced."""
    logits = torch.zeros(2, classes)
    ctx = Context(Output(logits), Output(logits), classes, BATCH, total_epochs=total_epochs)
    if warns:
        with pytest.warns(UserWarning, match=warns):
            return build_method(name, ctx, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_method(name, ctx, params)


def logits_and_labels(classes: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Student logits (a leaf), teacher logits at a larger scale, and labels."""
    g = torch.Generator().manual_seed(seed + 1)
    teacher = 3 * torch.randn(BATCH, classes, generator=g)
    labels = torch.randint(0, classes, (BATCH,), generator=g)
    return leaf(BATCH, classes, seed=seed), teacher, labels


def terms_on(method: Method, inputs: tuple[Tensor, Tensor, Tensor]) -> dict[str, Tensor]:
    s, t, labels = inputs
    return method.losses({"label": labels}, Output(s), Output(t))


def compare(row: str, ours: Tensor, reference: Tensor, s: Tensor) -> None:
    """``assert_parity`` of two losses and their gradients on the student logits ``s``."""
    assert_parity(row, loss_and_grads(ours, [s]), loss_and_grads(reference, [s]))


def max_grad(loss: Tensor, s: Tensor) -> float:
    return float(torch.autograd.grad(loss, s, retain_graph=True)[0].abs().max())


# ---------------------------------------------------------------- DKD


def z_score(logits: Tensor) -> Tensor:
    """logit-standardization-KD's ``normalize``: (z − mean) / (1e-7 + std), unbiased std."""
    return (logits - logits.mean(-1, keepdim=True)) / (1e-7 + logits.std(-1, keepdim=True))


def mdistiller_dkd(s: Tensor, t: Tensor, labels: Tensor, alpha: float, beta: float, T: float):
    """mdistiller's ``dkd_loss``: TCKD as the KL of the (target, rest) sums of the softmaxes,
    NCKD as the KL of softmaxes with the target logit pushed down by 1000, both summed, × T²,
    divided by the batch size."""
    gt = torch.zeros_like(s).scatter_(1, labels[:, None], 1).bool()
    p_s, p_t = F.softmax(s / T, dim=1), F.softmax(t / T, dim=1)

    def cat_mask(p: Tensor) -> Tensor:
        return torch.cat([(p * gt).sum(1, keepdim=True), (p * ~gt).sum(1, keepdim=True)], 1)

    tckd = F.kl_div(torch.log(cat_mask(p_s)), cat_mask(p_t), reduction="sum") * T**2 / len(s)
    log_q_s = F.log_softmax(s / T - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_q_s, F.softmax(t / T - 1000.0 * gt, dim=1), reduction="sum") * T**2 / len(s)
    return alpha * tckd + beta * nckd


@pytest.mark.parametrize(
    ("standardize", "params"),
    [
        (False, {"alpha": 1.0, "beta": 8.0, "temperature": 4.0}),
        (True, {"alpha": 9.0, "beta": 72.0, "temperature": 2.0}),
    ],
)
def test_dkd_equals_mdistiller_dkd_loss(standardize: bool, params: dict) -> None:
    s, t, labels = inputs = logits_and_labels(CLASSES, seed=30)
    terms = terms_on(build("dkd", CLASSES, params | {"logit_standardize": standardize}), inputs)
    s_ref, t_ref = (z_score(s), z_score(t)) if standardize else (s, t)
    reference = F.cross_entropy(s, labels) + mdistiller_dkd(s_ref, t_ref, labels, *params.values())
    source = "logit-standardization-KD" if standardize else "mdistiller"
    row = f"dkd (logit_standardize={standardize}) | {source} dkd_loss (in the test) + CE"
    compare(row, terms["ce"] + terms["tckd"] + terms["nckd"], reference, s)
    assert terms["nckd"].detach() > 0.1 * terms["tckd"].detach()  # both terms are exercised


def test_dkd_warms_up_as_mdistiller_over_the_same_share_of_the_run() -> None:
    s, t, labels = inputs = logits_and_labels(CLASSES, seed=31)
    method = build("dkd", CLASSES, {}, total_epochs=240)  # mdistiller's 20 of 240 epochs
    full = mdistiller_dkd(s, t, labels, 1.0, 8.0, 4.0).detach()
    for epoch in (0, 9, 18, 19, 100):
        method.set_epoch(epoch)
        terms = terms_on(method, inputs)
        mdistiller_epoch = epoch + 1  # its trainer counts epochs from 1
        expected = min(mdistiller_epoch / 20, 1.0) * full
        kd = (terms["tckd"] + terms["nckd"]).detach()
        assert float(kd) == pytest.approx(float(expected), rel=1e-5)
    short = build("dkd", CLASSES, {}, total_epochs=12)  # 1/12 of 12 epochs: full from epoch 0
    assert short.warmup_weight() == 1.0
    assert build("dkd", CLASSES, {"warmup": 0.0}, total_epochs=240).warmup_weight() == 1.0


def test_dkd_on_two_classes_is_kd_and_its_nckd_is_zero() -> None:
    s, t, _ = inputs = logits_and_labels(2, seed=32)
    terms = terms_on(build("dkd", 2, {"alpha": 1.0, "beta": 8.0, "temperature": 4.0}), inputs)
    assert terms["nckd"].detach().item() == 0.0
    assert max_grad(terms["nckd"], s) == 0.0
    # without a CE term (alpha 0) torchdistill returns the bare KL, without the T²
    reference = KDLoss("fc", "output", "fc", "output", temperature=4.0, alpha=0.0, beta=1.0)
    kd = 4.0**2 * reference(io(fc=s), io(fc=t))
    compare("dkd on 2 classes: TCKD | torchdistill KDLoss (Hinton's KD)", terms["tckd"], kd, s)


def near_a_tie(inputs: tuple[Tensor, Tensor, Tensor], gap: float) -> tuple:
    """The same teacher and labels; student logits ``gap`` apart, on the side the teacher
    does not prefer (a leaf)."""
    _, t, labels = inputs
    side = torch.where(t[:, :1] > t[:, 1:], -1.0, 1.0)  # against the teacher's preference
    s = torch.cat([gap * side / 2, -gap * side / 2], 1).requires_grad_(True)
    return s, t, labels


def test_standardized_dkd_on_two_classes_warns_and_distils_only_near_a_tie() -> None:
    """z-scored 2-class logits are ±1/√2 up to the std's 1e-7: no gradient on confident
    logits, a large one (∝ 1e-7 / gap²) when the student's two logits nearly tie."""
    inputs = logits_and_labels(2, seed=33)
    method = build("dkd", 2, {"logit_standardize": True}, warns="decision boundary")
    terms = terms_on(method, inputs)
    assert max_grad(terms["tckd"] + terms["nckd"], inputs[0]) < 1e-5
    tied = near_a_tie(inputs, 1e-5)
    terms = terms_on(method, tied)
    assert max_grad(terms["tckd"] + terms["nckd"], tied[0]) > 100


# ---------------------------------------------------------------- DIST


def official_dist(s: Tensor, t: Tensor, beta: float, gamma: float, tau: float) -> Tensor:
    """The official ``DIST``: 1 − mean Pearson correlation of the softmaxes at τ, over each
    row (inter-class) and each column (intra-class), × τ²; eps 1e-8 on the product of norms."""

    def relation(a: Tensor, b: Tensor) -> Tensor:
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        return 1 - ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-8)).mean()

    y_s, y_t = (s / tau).softmax(dim=1), (t / tau).softmax(dim=1)
    return tau**2 * (beta * relation(y_s, y_t) + gamma * relation(y_s.T, y_t.T))


def test_dist_equals_torchdistill_distloss() -> None:
    s, t, labels = inputs = logits_and_labels(CLASSES, seed=40)
    terms = terms_on(
        build("dist", CLASSES, {"beta": 2.0, "gamma": 2.0, "temperature": 4.0}), inputs
    )
    reference = DISTLoss("fc", "output", "fc", "output", beta=2.0, gamma=2.0, tau=4.0)
    ours = terms["inter"] + terms["intra"]
    compare(
        "dist (β = γ = 2, T = 4) | torchdistill DISTLoss", ours, reference(io(fc=s), io(fc=t)), s
    )
    official = official_dist(s, t, 2.0, 2.0, 4.0)
    compare("dist (β = γ = 2, T = 4) | the official DIST loss (in the test)", ours, official, s)
    assert torch.equal(terms["ce"].detach(), F.cross_entropy(s.detach(), labels))


def test_dist_on_two_classes_learns_from_the_intra_class_term_only() -> None:
    s, _, _ = inputs = logits_and_labels(2, seed=41)
    terms = terms_on(build("dist", 2, {}), inputs)
    assert max_grad(terms["inter"], s) < 1e-5 < max_grad(terms["intra"], s)


# ---------------------------------------------------------------- KD with logit standardisation


def test_ls_kd_equals_torchdistill_logitstdkdloss() -> None:
    s, t, labels = inputs = logits_and_labels(CLASSES, seed=50)
    params = {"temperature": 2.0, "ce_weight": 0.1, "kd_weight": 9.0}
    terms = terms_on(build("ls-kd", CLASSES, params), inputs)
    reference = LogitStdKDLoss("fc", "output", "fc", "output", temperature=2.0, alpha=0.1, beta=9)
    row = "ls-kd (T = 2, CE 0.1, KD 9) | torchdistill LogitStdKDLoss"
    compare(row, terms["ce"] + terms["kd"], reference(io(fc=s), io(fc=t), labels), s)


def test_ls_kd_on_two_classes_warns_and_distils_only_near_a_tie() -> None:
    inputs = logits_and_labels(2, seed=51)
    method = build("ls-kd", 2, {}, warns="decision boundary")
    assert max_grad(terms_on(method, inputs)["kd"], inputs[0]) < 1e-5
    tied = near_a_tie(inputs, 1e-5)
    assert max_grad(terms_on(method, tied)["kd"], tied[0]) > 100
