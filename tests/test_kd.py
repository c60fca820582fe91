"""Logit KD and the vanilla baseline against hand-computed values."""

import math

import pytest
import torch

from kdbench.config import ConfigError
from kdbench.method import Context, build_method
from kdbench.output import Output


def ctx(num_classes=3):
    logits = torch.zeros(2, num_classes)
    return Context(Output(logits), Output(logits), num_classes, num_samples=10)


def hand_kd(s, t, T):
    """T² · mean over the batch of Σ_c p_t log(p_t / p_s), softmax at temperature T."""
    total = 0.0
    for srow, trow in zip(s, t, strict=True):
        ps = [math.exp(v / T) for v in srow]
        pt = [math.exp(v / T) for v in trow]
        ps = [v / sum(ps) for v in ps]
        pt = [v / sum(pt) for v in pt]
        total += sum(b * math.log(b / a) for a, b in zip(ps, pt, strict=True))
    return T * T * total / len(s)


def hand_ce(s, y):
    return sum(
        math.log(sum(math.exp(v) for v in row)) - row[c] for row, c in zip(s, y, strict=True)
    ) / len(s)


def test_kd_loss_matches_hand_computation():
    s = [[1.0, -0.5, 2.0], [0.3, 0.1, -1.0]]
    t = [[2.0, 0.0, 0.5], [-1.0, 1.5, 0.2]]
    y = [2, 1]
    method = build_method("kd", ctx(), {"temperature": 4.0, "alpha": 0.9})
    batch = {"label": torch.tensor(y)}
    losses = method.losses(batch, Output(torch.tensor(s)), Output(torch.tensor(t)))
    assert losses["kd"].item() == pytest.approx(0.9 * hand_kd(s, t, 4.0), rel=1e-5)
    assert losses["ce"].item() == pytest.approx(0.1 * hand_ce(s, y), rel=1e-5)


def test_kd_term_vanishes_when_student_equals_teacher():
    method = build_method("kd", ctx(), {})
    z = torch.tensor([[1.0, 2.0, 3.0]])
    assert method.losses({"label": torch.tensor([0])}, Output(z), Output(z))["kd"].item() == 0


def test_vanilla_is_cross_entropy():
    s = [[1.0, -0.5, 2.0], [0.3, 0.1, -1.0]]
    losses = build_method("vanilla", ctx(), {}).losses(
        {"label": torch.tensor([0, 2])}, Output(torch.tensor(s)), None
    )
    assert list(losses) == ["ce"]
    assert losses["ce"].item() == pytest.approx(hand_ce(s, [0, 2]), rel=1e-6)


def test_vanilla_also_trains_auxiliary_heads():
    s, a, b = [[1.0, -0.5, 2.0]], [[0.2, 0.4, -1.0]], [[-2.0, 1.0, 0.5]]
    out = Output(
        torch.tensor(s),
        {
            "spatial.logits": torch.tensor(a),
            "frequency.logits": torch.tensor(b),
            "fused": torch.ones(1, 3),
        },
    )
    losses = build_method("vanilla", ctx(), {"aux_weight": 0.5}).losses(
        {"label": torch.tensor([1])}, out, None
    )
    assert losses["ce"].item() == pytest.approx(hand_ce(s, [1]), rel=1e-6)
    expected = 0.5 * (hand_ce(a, [1]) + hand_ce(b, [1])) / 2
    assert losses["aux"].item() == pytest.approx(expected, rel=1e-6)
    off = build_method("vanilla", ctx(), {"aux_weight": 0.0})
    assert list(off.losses({"label": torch.tensor([1])}, out, None)) == ["ce"]


def test_unknown_method_parameter_is_named():
    with pytest.raises(ConfigError, match="method 'kd': unknown parameter 'temprature'; did"):
        build_method("kd", ctx(), {"temprature": 2})
