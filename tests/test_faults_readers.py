"""Faults the readers of run results must survive: a truncated run JSON, a report that mixes
recipes, a sweep stopped with Ctrl-C."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from kdbench.cli import main
from kdbench.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TeacherConfig
from kdbench.report import analyse, history_frame, runs_frame
from kdbench.results import load_results, read_result, run_path, set_aside, write_json
from kdbench.sweep.journal import Job, JobState, job_paths, latest_jobs, record_jobs
from kdbench.sweep.plan import expand
from kdbench.sweep.spec import load_spec
from kdbench.sweep.status import RunStatus, classify, run_states, to_submit

BASE = {
    "student": {"name": "resnet10t"},
    "teacher": {"name": "resnet18", "train": {"epochs": 3}},
    "train": {"epochs": 2},
}
TINY = {"train": {"epochs": 1}, "data": {"params": {"videos": 20}}}


def write_spec(folder: Path, spec: dict) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def truncate(path: Path) -> None:
    """Cut a run JSON in the middle, as a full disk or a half-copied folder leaves it."""
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


# --- a truncated run JSON ------------------------------------------------------------------


def test_read_result_warns_once_and_load_results_goes_on(tmp_path, capsys):
    write_json(run_path(tmp_path, "good"), {"run_id": "good", "status": "done"})
    write_json(run_path(tmp_path, "cut"), {"run_id": "cut", "status": "done", "config": {}})
    truncate(run_path(tmp_path, "cut"))
    (tmp_path / "runs" / "list.json").write_text("[1, 2]")  # valid JSON, not a run result
    assert read_result(tmp_path, "cut") is None and read_result(tmp_path, "cut") is None
    assert [r["run_id"] for r in load_results(tmp_path)] == ["good"]
    lines = warnings_in(capsys.readouterr().err)
    assert len(lines) == 2  # once per file, however often it is read
    assert lines[0].startswith(f"warning: {run_path(tmp_path, 'cut')}: not a readable JSON file")
    assert lines[0] and lines[0].endswith("; treated as missing")
    assert "list.json: not a kdbench run result" in lines[1]


def test_set_aside_renames_and_never_deletes(tmp_path, capsys):
    path = run_path(tmp_path, "cut")
    write_json(path, {"run_id": "cut", "status": "done"})
    truncate(path)
    text = path.read_text()
    assert read_result(tmp_path, "cut") is None
    kept = set_aside(path)
    assert not path.exists() and kept.read_text() == text
    assert kept.parent == path.parent and kept.name.startswith("cut.json.damaged-")
    assert kept.name.endswith("Z") and load_results(tmp_path) == []
    path.write_text("{")  # damaged again later: warned again
    assert read_result(tmp_path, "cut") is None
    assert len(warnings_in(capsys.readouterr().err)) == 2


@pytest.mark.parametrize("command", ["status", "plan"])
def test_sweep_status_and_plan_go_on_past_a_truncated_run(tmp_path, capsys, command):
    spec = write_spec(tmp_path, {"name": "f", "base": BASE, "grid": {"method": ["kd"],
                                                                    "seed": [0, 1]}})  # fmt: skip
    plan = expand(load_spec(spec))
    results = tmp_path / "results"
    for cfg in plan.runs():
        write_json(run_path(results, cfg.run_id()), {"run_id": cfg.run_id(), "status": "done"})
    cut = plan.students[1]
    truncate(run_path(results, cut.run_id()))
    assert main(["sweep", command, str(spec), "--results", str(results)]) == 0
    out, err = capsys.readouterr()
    [line] = warnings_in(err)
    assert str(run_path(results, cut.run_id())) in line and "treated as missing" in line
    rows = {c.run_id(): next(r for r in out.splitlines() if c.run_id() in r) for c in plan.runs()}
    assert "missing" in rows.pop(cut.run_id())
    assert all("done" in row for row in rows.values())


@pytest.mark.slow
def test_sweep_run_and_kdbench_run_rerun_a_truncated_run(tmp_path, capsys):
    spec = write_spec(
        tmp_path, {"name": "f", "extends": "smoke", "base": TINY, "grid": {"method": ["vanilla"],
                                                                            "seed": [0, 1]}}
    )  # fmt: skip
    cut, other = expand(load_spec(spec)).students
    results = tmp_path / "results"
    untouched = {"run_id": other.run_id(), "status": "done", "note": "not re-run"}
    write_json(run_path(results, other.run_id()), untouched)
    write_json(run_path(results, cut.run_id()), {"run_id": cut.run_id(), "status": "done"})
    truncate(run_path(results, cut.run_id()))
    args = ["sweep", "run", str(spec), "--results", str(results), "--executor", "debug"]
    assert main(args) == 0
    [line] = warnings_in(capsys.readouterr().err)
    assert str(run_path(results, cut.run_id())) in line
    assert read_result(results, cut.run_id())["status"] == "done"
    assert read_result(results, other.run_id()) == untouched
    truncate(run_path(results, cut.run_id()))
    overrides = ["data.params.videos=20", "train.epochs=1"]
    assert main(["run", "--preset", "smoke", *overrides, "--results", str(results)]) == 0
    [line] = warnings_in(capsys.readouterr().err)
    assert str(run_path(results, cut.run_id())) in line
    assert read_result(results, cut.run_id())["status"] == "done"


# --- the report ------------------------------------------------------------------------------

DUAL = TeacherConfig("dual-branch", run="t" * 12)


def finished(method: str, seed: int, auc: float, videos: int, epochs: int) -> dict:
    """A finished resnet10t run on SynthFF (``videos``, ``epochs``) with test AUC ``auc``."""
    data = DataConfig(params={"quality": "hq", "videos": videos})
    teacher = DUAL if method != "vanilla" else None
    cfg = RunConfig(
        seed=seed, student=ModelConfig("resnet10t"), method=MethodConfig(method), data=data
    )
    cfg.teacher, cfg.train.epochs = teacher, epochs
    test = {"acc": auc, "auc": auc}
    return {
        "run_id": cfg.run_id(),
        "status": "done",
        "config": asdict(cfg),
        "history": [{"epoch": epochs, "val": test, "test": test}],
        "best": {"epoch": epochs, "val": test, "test": test},
        "cost": {"student": {"params": 4_900_000, "flops": 90_000_000}},
    }


def seeds(method: str, aucs: list[float], videos: int, epochs: int) -> list[dict]:
    return [finished(method, s, auc, videos, epochs) for s, auc in enumerate(aucs)]


def groups_of(records: list[dict]):
    report = analyse("synthff hq", runs_frame(records), history_frame(records), "auc")
    return report.groups.set_index("method_key")


def test_no_gain_over_a_vanilla_run_of_another_recipe():
    small = seeds("vanilla", [0.60, 0.62, 0.64], videos=40, epochs=2)
    big_kd = seeds("kd", [0.74, 0.76, 0.75], videos=200, epochs=3)
    kd = groups_of(small + big_kd).filter(like="kd", axis=0).iloc[0]
    assert math.isnan(kd["delta"]) and math.isnan(kd["p_value"]) and kd["test"] == ""


def test_the_gain_is_over_the_vanilla_run_trained_the_same_way():
    small = seeds("vanilla", [0.80, 0.81, 0.82], videos=40, epochs=2)
    big = seeds("vanilla", [0.60, 0.62, 0.64], videos=200, epochs=3)
    big_kd = seeds("kd", [0.74, 0.76, 0.75], videos=200, epochs=3)
    groups = groups_of(small + big + big_kd)
    kd = groups.filter(like="kd", axis=0).iloc[0]
    assert kd["delta"] == pytest.approx(13.0) and kd["test"] == "paired t"
    # the 40-video vanilla run scores higher at the same cost, but is on its own front
    assert kd["pareto_gflops"] and groups["pareto_gflops"].sum() == 2


def test_the_report_names_a_truncated_run_and_goes_on(tmp_path, capsys):
    records = seeds("vanilla", [0.6, 0.62], 40, 2) + seeds("kd", [0.7, 0.72], 40, 2)
    for record in records:
        write_json(run_path(tmp_path / "results", record["run_id"]), record)
    cut = run_path(tmp_path / "results", records[-1]["run_id"])
    truncate(cut)
    assert main(["report", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    [line] = warnings_in(err)
    assert str(cut) in line and "not a readable JSON file" in line
    assert "report: 3 finished runs" in err
    assert str(cut) in (tmp_path / "out" / "README.md").read_text()


def test_only_truncated_runs_is_still_no_results(tmp_path, capsys):
    write_json(run_path(tmp_path, "a"), {"run_id": "a", "status": "done"})
    truncate(run_path(tmp_path, "a"))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(warnings_in(err)) == 1 and "error: no run results to report" in err
    assert not (tmp_path / "out").exists()


# --- an interrupted sweep ------------------------------------------------------------------


def a_status() -> RunStatus:
    spec = {"base": BASE, "grid": {"method": ["vanilla"]}}
    return RunStatus(expand(spec).students[0], "student")


def test_an_interrupted_record_is_resubmitted_not_failed(tmp_path):
    status = a_status()
    record = {"run_id": status.run_id, "status": "interrupted", "error": "KeyboardInterrupt"}
    state = classify(status, record, None, None, tmp_path)
    assert (state.state, state.detail) == ("missing", "interrupted: resumes from its last epoch")
    assert to_submit([state]) == [state]


def test_a_local_job_the_sweep_cancelled_is_resubmitted(tmp_path):
    status = a_status()
    record_jobs(tmp_path, [Job(status.run_id, "local", "123", time.time())])
    ended = JobState("ended", "INTERRUPTED")
    assert classify(status, None, latest_jobs(tmp_path)[status.run_id], ended, tmp_path).state == (
        "failed"
    )  # killed by someone else: failed, as before
    record_jobs(tmp_path, [Job(status.run_id, "local", "123", time.time(), cancelled=True)])
    state = classify(status, None, latest_jobs(tmp_path)[status.run_id], ended, tmp_path)
    assert state.state == "missing" and "cancelled by the sweep" in state.detail


@pytest.mark.slow
def test_ctrl_c_then_a_plain_sweep_run_finishes_everything(tmp_path):
    base = {"train": {"epochs": 1}, "teacher": {"train": {"epochs": 8}},
            "data": {"params": {"videos": 20}}}  # fmt: skip
    spec = write_spec(tmp_path, {"name": "i", "extends": "smoke", "base": base,
                                 "grid": {"method": ["kd"], "seed": [0]}})  # fmt: skip
    plan, results = expand(load_spec(spec)), tmp_path / "results"
    teacher = plan.teachers[0].run_id()
    command = [sys.executable, "-m", "kdbench.cli", "sweep", "run", str(spec),
               "--results", str(results), "--executor", "local"]  # fmt: skip
    sweep = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    checkpoint = results / "checkpoints" / teacher / "last.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and sweep.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), sweep.communicate()[1]
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err
    assert "interrupted; unfinished runs resume from their last epoch" in err
    job = latest_jobs(results)[teacher]
    assert job.cancelled
    while Path(f"/proc/{job.job_id}").exists() and time.time() < deadline:
        time.sleep(0.2)  # the cancelled job stops at its next signal check
    states = {s.run_id: s for s in run_states(plan, results)}
    assert states[teacher].state == "missing"
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert {r["status"] for r in load_results(results)} == {"done"}
    assert len(load_results(results)) == 2
    resumed = job_paths(results, latest_jobs(results)[teacher].job_id).stdout.read_text()
    assert "resuming after epoch" in resumed
