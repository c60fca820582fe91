"""train.ema: the weight average against its formula, and a run that evaluates and saves it."""

import json

import pytest
import torch
from torch import nn

import kdbench.train.loop as loop
from kdbench.config import ConfigError
from kdbench.results import run_path
from kdbench.train import run, validate
from kdbench.train.ema import WeightAverage


def test_the_average_follows_its_formula_with_warm_up():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    average = WeightAverage(model, decay=0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(1, 31):
        (model(torch.randn(8, 3)) * torch.randn(8, 4)).sum().backward()  # BN stats move too
        optimizer.step()
        optimizer.zero_grad()
        average.update()
        d = min(0.9, (1 + step) / (10 + step))
        for key, live in model.state_dict().items():
            if live.is_floating_point():
                expected[key] = d * expected[key] + (1 - d) * live
            else:
                expected[key] = live.clone()
    got = average.model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6)
    assert got["1.num_batches_tracked"] == 30
    live = model.state_dict()["0.weight"]
    assert not torch.allclose(got["0.weight"], live)  # an average, not a copy
    assert not average.model.training
    assert not any(p.requires_grad for p in average.model.parameters())


@pytest.mark.slow
def test_a_run_evaluates_and_saves_the_average_and_resumes_it(tiny, tmp_path, monkeypatch):
    cfg = tiny("train.epochs=3", "train.ema=0.8", "data.params.videos=60")
    whole = run(cfg, tmp_path / "whole")
    plain = run(tiny("train.epochs=3", "data.params.videos=60"), tmp_path / "plain")
    assert [e["train"] for e in whole["history"]] == [e["train"] for e in plain["history"]]
    assert whole["history"][-1]["val"] != plain["history"][-1]["val"]  # another model scored

    real_epoch = loop.train_epoch
    calls = []

    def interrupted(setup, epoch, seed, progress):
        calls.append(epoch)
        if epoch == 2 and len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(setup, epoch, seed, progress)

    monkeypatch.setattr(loop, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut")
    resumed = run(cfg, tmp_path / "cut")
    assert calls == [0, 1, 2, 2]
    assert json.dumps(resumed["history"][-1]["val"]) == json.dumps(whole["history"][-1]["val"])
    saved = torch.load(tmp_path / "cut" / resumed["checkpoint"], weights_only=True)
    for key, value in torch.load(tmp_path / "whole" / whole["checkpoint"]).items():
        torch.testing.assert_close(saved[key], value)
    live = torch.load(tmp_path / "plain" / plain["checkpoint"], weights_only=True)
    assert any(not torch.equal(saved[k], live[k]) for k in live if live[k].is_floating_point())
    assert run_path(tmp_path / "cut", cfg.run_id()).exists()
    with pytest.raises(ConfigError, match=r"train\.ema: expected a decay in \[0, 1\)"):
        validate(tiny("train.ema=1.5"))
