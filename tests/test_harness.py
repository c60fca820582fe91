"""One run end to end on tiny SynthFF: result records, resume after a kill, failures."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import kdbench.train.loop as loop
import kdbench.train.record as record
from kdbench.config import ConfigError
from kdbench.methods.vanilla import Vanilla
from kdbench.registry import METHODS
from kdbench.results import load_results, run_path
from kdbench.sweep.plan import Plan, resolve_teacher
from kdbench.sweep.runner import run_in_process
from kdbench.train import run, validate

pytestmark = pytest.mark.slow


def test_a_run_writes_a_complete_record(tiny, tmp_path):
    cfg = tiny("train.epochs=2")
    record = run(cfg, tmp_path)
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
    record = run(cfg, tmp_path)
    assert record["precision"] == "bfloat16"
    assert math.isfinite(record["history"][0]["train"]["ce"])
    weights = torch.load(tmp_path / record["checkpoint"], weights_only=True)
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    assert cfg.run_id() != tiny("train.precision=fp32").run_id()
    assert run(tiny("train.precision=fp32"), tmp_path)["precision"] == "float32"


def test_a_bad_precision_is_rejected_by_name(tiny):
    with pytest.raises(ConfigError, match=r"train\.precision.*did you mean 'bf16'"):
        validate(tiny("train.precision=bf61"))


def test_a_finished_run_is_not_trained_again(tiny, tmp_path, monkeypatch):
    cfg = tiny()
    first = run(cfg, tmp_path)
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("trained twice"))
    again = run(cfg, tmp_path)
    assert again["finished"] == first["finished"] and again["run_id"] == first["run_id"]


def test_resume_after_interrupt_matches_an_uninterrupted_run(tiny, tmp_path, monkeypatch):
    cfg = tiny("train.epochs=3")
    whole = run(cfg, tmp_path / "whole")

    real_epoch = loop.train_epoch
    calls = []

    def interrupted(setup, epoch, seed, progress):
        calls.append(epoch)
        if epoch == 1 and len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second epoch
        return real_epoch(setup, epoch, seed, progress)

    monkeypatch.setattr(loop, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut")
    cut = json.loads(run_path(tmp_path / "cut", cfg.run_id()).read_text())
    assert cut["status"] == "interrupted" and cut["error"] == "KeyboardInterrupt"
    resumed = run(cfg, tmp_path / "cut")
    assert calls == [0, 1, 1, 2]  # epoch 0 was not trained again
    for a, b in zip(whole["history"], resumed["history"], strict=True):
        assert a["train"] == b["train"] and a["test"] == b["test"]
    # the cost of every attempt is counted, and the record says the run was resumed
    assert (whole["attempts"], whole["resumed_from_epoch"]) == (1, 0)
    assert (resumed["attempts"], resumed["resumed_from_epoch"]) == (2, 1)
    assert resumed["wall_time_s"] > sum(e["time_s"] for e in resumed["history"])


def test_test_epochs_best_reports_what_all_reports(tiny, tmp_path, monkeypatch):
    size = "data.params.videos=60"  # both labels in val, so its AUC is a number
    every = run(tiny("train.epochs=4", size), tmp_path / "all")
    tested = []
    real_evaluate = loop.evaluate

    def counted(setup, split, epoch=0):
        tested.append((split, epoch)) if split == "test" else None
        return real_evaluate(setup, split, epoch)

    monkeypatch.setattr(loop, "evaluate", counted)
    cfg = tiny("train.epochs=4", size, "train.test_epochs=best")
    best = run(cfg, tmp_path / "best")
    assert best["best"] == every["best"]  # the same selected epoch and test numbers
    scores = [e["val"]["auc"] for e in every["history"]]
    assert not any(math.isnan(v) for v in scores)
    expected = [i for i, v in enumerate(scores) if v >= max(scores[: i + 1])] + [3]
    assert sorted({epoch for _, epoch in tested}) == sorted(set(expected))
    assert [("test" in e) for e in best["history"]] == [i in expected for i in range(4)]
    assert len(set(expected)) < 4  # some epoch was skipped
    assert cfg.run_id() != tiny("train.epochs=4", size).run_id()
    with pytest.raises(ConfigError, match=r"train\.test_epochs.*did you mean 'best'"):
        validate(tiny("train.test_epochs=bset"))


def test_checkpoint_every_s_skips_saves_but_not_the_last(tiny, tmp_path, monkeypatch):
    saved = []
    real_save = loop.save_checkpoint

    def counted(folder, setup, state):
        saved.append(state["epoch"])
        real_save(folder, setup, state)

    monkeypatch.setattr(loop, "save_checkpoint", counted)
    cfg = tiny("train.epochs=3", "train.checkpoint_every_s=3600", "train.keep_last=true")
    record = run(cfg, tmp_path)
    assert saved == [3]  # an hour between saves: only the last epoch's
    assert cfg.run_id() == tiny("train.epochs=3").run_id()  # not part of what is computed
    last = torch.load(tmp_path / "checkpoints" / cfg.run_id() / "last.pt", weights_only=False)
    assert last["epoch"] == 3 and len(record["history"]) == 3
    saved.clear()
    run(tiny("train.epochs=3"), tmp_path / "every", rerun=True)
    assert saved == [1, 2, 3]


def test_a_sweep_traces_each_architecture_once(tiny, tmp_path, monkeypatch):
    traced = []
    real = record.measure_cost
    monkeypatch.setattr(record, "COSTS", {})
    monkeypatch.setattr(record, "measure_cost", lambda m, s: traced.append(s) or real(m, s))
    first, second = run(tiny(), tmp_path), run(tiny("seed=1"), tmp_path)
    assert len(traced) == 1 and first["cost"] == second["cost"]
    other = run(tiny("student.name=resnet10t"), tmp_path)
    assert (
        len(traced) == 2
        and other["cost"]["student"]["params"] != first["cost"]["student"]["params"]
    )


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
        run(cfg, tmp_path)
    record = json.loads(run_path(tmp_path, cfg.run_id()).read_text())
    assert record["status"] == "failed"
    assert record["error"] == "RuntimeError: boom in step 1"
    assert "losses" in record["traceback"]


def test_a_missing_teacher_run_is_a_recorded_failure(tiny, tmp_path):
    cfg = tiny("method.name=kd", "teacher.run=0123456789ab")
    with pytest.raises(ConfigError, match=r"teacher\.run=.0123456789ab.: no finished run"):
        run(cfg, tmp_path)
    assert json.loads(run_path(tmp_path, cfg.run_id()).read_text())["status"] == "failed"


def test_distillation_needs_a_teacher(tiny, tmp_path):
    cfg = tiny("method.name=kd")
    cfg.teacher = None
    with pytest.raises(ConfigError, match="distils from a teacher"):
        run(cfg, tmp_path)


@pytest.fixture(scope="module")
def shared_results(tmp_path_factory):
    return tmp_path_factory.mktemp("every-method")


@pytest.mark.parametrize("name", [n for n in METHODS.names() if not n.startswith("test-")])
def test_every_method_trains_on_the_smoke_preset(name, tiny, shared_results):
    plan = Plan()
    # pre-activation features need a ResNet-family student (the smoke one is a MobileNetV3)
    student = ["student.name=resnet10t"] if METHODS.get(name).needs_preact else []
    cfg = resolve_teacher(tiny(f"method.name={name}", *student), plan)
    records = run_in_process([*plan.teachers, cfg], shared_results, log=lambda *_: None)
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


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", r"train\.epochs: expected at least 1, got 0"),
        ("train.lr=-0.1", r"train\.lr: expected a learning rate > 0, got -0\.1"),
        ("teacher.kwargs.lsf=true", r"teacher\.kwargs of 'dual-branch'.*'lsf'.*did you mean 'lfs'"),
        ("teacher.kwargs.lfs=maybe", r"teacher\.kwargs\.lfs: expected bool, got 'maybe'"),
        ("teacher.kwargs.image_size=true", r"teacher\.kwargs\.image_size: expected int, got True"),
        (
            "student.kwargs.drop_rate=maybe",
            r"student\.kwargs\.drop_rate: expected float, got 'maybe'",
        ),
    ],
)
def test_bad_training_and_model_settings_fail_before_building(tiny, override, message):
    cfg = tiny("method.name=kd", "teacher.name=dual-branch", override)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_a_model_sized_for_other_images_names_the_key_to_set(tiny, tmp_path):
    """data.params.size: 48 with a dual-branch model sized 32: one line naming the key, in
    the error and in the failed record (it used to fail inside FAD, blaming teacher.run)."""
    dual = ["student.name=dual-branch", "student.kwargs.spatial=resnet10t"]
    dual += ["student.kwargs.frequency=resnet10t", "student.kwargs.image_size=32"]
    cfg = tiny("method.name=vanilla", "data.params.size=48", *dual)
    cfg.teacher = None
    expected = r"student\.kwargs\.image_size is 32, but the data's images are 48×48"
    with pytest.raises(ConfigError, match=expected):
        run(cfg, tmp_path)
    (failed,) = load_results(tmp_path)
    assert failed["status"] == "failed" and "set student.kwargs.image_size=48" in failed["error"]


def test_without_a_terminal_each_epoch_logs_one_line(tiny, tmp_path, capsys):
    plan = Plan()
    cfg = resolve_teacher(tiny("method.name=kd", "train.epochs=2"), plan)
    run_in_process([*plan.teachers, cfg], tmp_path, progress=False, log=lambda *_: None)
    lines = capsys.readouterr().err.splitlines()
    epochs = [line for line in lines if line.startswith(f"run {cfg.run_id()} epoch ")]
    assert [line.split(":")[0].split()[-1] for line in epochs] == ["1/2", "2/2"]
    assert all(" ce " in line and " kd " in line and "| val auc " in line for line in epochs)
