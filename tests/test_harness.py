"""The harness end to end on tiny SynthFF: result records, resume after a kill, failures."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import kdbench.harness as harness
from kdbench.config import ConfigError
from kdbench.methods.vanilla import Vanilla
from kdbench.registry import METHODS
from kdbench.results import load_results, run_path
from kdbench.sweep import Plan, resolve_teacher, run_local

pytestmark = pytest.mark.slow


def test_a_run_writes_a_complete_record(tiny, tmp_path):
    cfg = tiny("train.epochs=2")
    record = harness.run(cfg, tmp_path)
    on_disk = json.loads(run_path(tmp_path, cfg.run_id()).read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert record["status"] == "done" and record["run_id"] == cfg.run_id()
    assert [e["epoch"] for e in record["history"]] == [1, 2]
    assert set(record["history"][0]["train"]) == {"ce"}
    assert {"acc", "auc", "video_acc", "video_auc"} <= set(record["last"]["test"])
    per_kind = {k for k in record["last"]["test"] if k.startswith("auc_")}
    assert per_kind and per_kind <= {"auc_spatial", "auc_frequency", "auc_both"}
    assert record["cost"]["student"]["params"] == 570_274  # mobilenetv3_small_050, 2 classes
    assert record["cost"]["student"]["flops"] > 0 and record["cost"]["teacher"] is None
    assert "multiply-add" in record["cost"]["flop_convention"]
    assert record["config"]["seed"] == 0 and torch.__version__.startswith(
        record["packages"]["torch"]
    )
    assert (tmp_path / record["checkpoint"]).exists()
    assert record["best"]["epoch"] in (1, 2)


def test_bf16_training_keeps_fp32_weights_and_says_so(tiny, tmp_path):
    cfg = tiny("train.precision=bf16")
    record = harness.run(cfg, tmp_path)
    assert record["precision"] == "bfloat16"
    assert math.isfinite(record["history"][0]["train"]["ce"])
    weights = torch.load(tmp_path / record["checkpoint"], weights_only=True)
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    assert cfg.run_id() != tiny("train.precision=fp32").run_id()
    assert harness.run(tiny("train.precision=fp32"), tmp_path)["precision"] == "float32"


def test_a_bad_precision_is_rejected_by_name(tiny):
    with pytest.raises(ConfigError, match=r"train\.precision.*did you mean 'bf16'"):
        harness.validate(tiny("train.precision=bf61"))


def test_a_finished_run_is_not_trained_again(tiny, tmp_path, monkeypatch):
    cfg = tiny()
    first = harness.run(cfg, tmp_path)
    monkeypatch.setattr(harness, "train", lambda *a, **k: pytest.fail("trained twice"))
    again = harness.run(cfg, tmp_path)
    assert again["finished"] == first["finished"] and again["run_id"] == first["run_id"]


def test_resume_after_interrupt_matches_an_uninterrupted_run(tiny, tmp_path, monkeypatch):
    cfg = tiny("train.epochs=3")
    whole = harness.run(cfg, tmp_path / "whole")

    real_epoch = harness.train_epoch
    calls = []

    def interrupted(setup, epoch, seed, progress):
        calls.append(epoch)
        if epoch == 1 and len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second epoch
        return real_epoch(setup, epoch, seed, progress)

    monkeypatch.setattr(harness, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        harness.run(cfg, tmp_path / "cut")
    cut = json.loads(run_path(tmp_path / "cut", cfg.run_id()).read_text())
    assert cut["status"] == "interrupted" and cut["error"] == "KeyboardInterrupt"
    resumed = harness.run(cfg, tmp_path / "cut")
    assert calls == [0, 1, 1, 2]  # epoch 0 was not trained again
    for a, b in zip(whole["history"], resumed["history"], strict=True):
        assert a["train"] == b["train"] and a["test"] == b["test"]
    # the cost of every attempt is counted, and the record says the run was resumed
    assert (whole["attempts"], whole["resumed_from_epoch"]) == (1, 0)
    assert (resumed["attempts"], resumed["resumed_from_epoch"]) == (2, 1)
    assert resumed["wall_time_s"] > sum(e["time_s"] for e in resumed["history"])


def test_killed_process_resumes_and_leaves_one_json(tmp_path):
    args = [sys.executable, "-m", "kdbench.cli", "run", "--preset", "smoke", "--results",
            str(tmp_path), "train.epochs=6", "data.params.videos=40"]  # fmt: skip
    env = dict(os.environ, CI="1")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not list(tmp_path.glob("checkpoints/*/last.pt")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(tmp_path.glob("runs/*.json")), "killed before the end, so no result yet"
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    records = load_results(tmp_path)
    assert len(records) == 1 and records[0]["status"] == "done"
    assert [e["epoch"] for e in records[0]["history"]] == [1, 2, 3, 4, 5, 6]
    # the killed attempt's epochs count in the cost, and the record says it was resumed
    assert records[0]["attempts"] == 2 and records[0]["resumed_from_epoch"] >= 1
    assert records[0]["wall_time_s"] >= sum(e["time_s"] for e in records[0]["history"])
    assert "resuming after epoch" in done.stderr


@METHODS.register("test-explodes")
class Explodes(Vanilla):
    description = "test only: fails in its first step"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.steps = 0

    def losses(self, batch, s_out, t_out):
        self.steps += 1
        if self.steps == 1:
            raise RuntimeError("boom in step 1")
        return super().losses(batch, s_out, t_out)


def test_a_failure_is_recorded_and_raised(tiny, tmp_path):
    cfg = tiny("method.name=test-explodes")
    with pytest.raises(RuntimeError, match="boom"):
        harness.run(cfg, tmp_path)
    record = json.loads(run_path(tmp_path, cfg.run_id()).read_text())
    assert record["status"] == "failed"
    assert record["error"] == "RuntimeError: boom in step 1"
    assert "losses" in record["traceback"]


def test_a_missing_teacher_run_is_a_recorded_failure(tiny, tmp_path):
    cfg = tiny("method.name=kd", "teacher.run=0123456789ab")
    with pytest.raises(ConfigError, match=r"teacher\.run=.0123456789ab.: no finished run"):
        harness.run(cfg, tmp_path)
    assert json.loads(run_path(tmp_path, cfg.run_id()).read_text())["status"] == "failed"


def test_distillation_needs_a_teacher(tiny, tmp_path):
    cfg = tiny("method.name=kd")
    cfg.teacher = None
    with pytest.raises(ConfigError, match="distils from a teacher"):
        harness.run(cfg, tmp_path)


@pytest.fixture(scope="module")
def shared_results(tmp_path_factory):
    return tmp_path_factory.mktemp("every-method")


@pytest.mark.parametrize("name", [n for n in METHODS.names() if not n.startswith("test-")])
def test_every_method_trains_on_the_smoke_preset(name, tiny, shared_results):
    plan = Plan()
    cfg = resolve_teacher(tiny(f"method.name={name}"), plan)
    records = run_local(Plan(plan.teachers, [cfg]), shared_results, log=lambda *_: None)
    record = records[-1]
    assert record["status"] == "done", record.get("error")
    assert record["config"]["method"]["name"] == name
    terms = record["history"][0]["train"]
    assert terms and all(v == v for v in terms.values())  # named and finite (not NaN)
    if name == "two-in-one":  # its gradient norms on z reach the history
        stats = record["history"][0]["method_stats"]
        assert set(stats) == {
            "grad_spatial",
            "grad_frequency",
            "grad_ce_kd",
            "cos_spatial_frequency",
        }
        assert all(v > 0 for k, v in stats.items() if k.startswith("grad_"))
    if METHODS.get(name).needs_teacher:
        assert record["cost"]["teacher"]["params"] > record["cost"]["student"]["params"]
