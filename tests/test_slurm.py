"""Sweeps on a real Slurm cluster (``sudo slurm/start.sh``): every run of a sweep through
``--executor slurm``, a re-run that submits nothing, a recorded failure, and a preempted job
that is requeued and resumes from its checkpoint. Skipped when no cluster is up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import submitit

from kdbench.config import build_config, load_preset
from kdbench.results import checkpoint_dir, load_results, read_result
from kdbench.sweep.backends import Sweep
from kdbench.sweep.backends.slurm import Slurm
from kdbench.sweep.journal import jobs_folder
from kdbench.sweep.plan import Plan, expand, resolve_teacher
from kdbench.sweep.spec import load_spec
from kdbench.sweep.status import RunStatus

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "slurm" / "local.yaml"
TEST_CONF = Path(os.environ.get("KDBENCH_SLURM_DIR", "/tmp/kdbench-slurm")) / "etc/slurm.conf"
SPEC = """\
name: ci
extends: smoke
extra:
  - {method: vanilla, train.lr: 1.0e+6}  # diverges: the deliberately failing run
"""


def cluster_conf() -> str | None:
    """The slurm.conf of a cluster that answers, or None."""
    conf = os.environ.get("SLURM_CONF")
    if not conf and cluster_is_running():
        conf = str(TEST_CONF)
    if not conf:
        return None
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=dict(os.environ, SLURM_CONF=conf),
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    up = out.returncode == 0 and {"idle", "mixed", "allocated"} & set(out.stdout.split())
    return conf if up else None


def cluster_is_running() -> bool:
    """Whether slurm/start.sh's slurmctld lives (asking sinfo a stopped one takes 10 s)."""
    pid_file = TEST_CONF.parents[1] / "run" / "slurmctld.pid"
    try:
        stat = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


CONF = cluster_conf()
if CONF is None and os.environ.get("KDBENCH_REQUIRE_SLURM"):
    pytest.fail("KDBENCH_REQUIRE_SLURM is set, but no Slurm cluster answers", pytrace=False)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CONF is None,
        reason="no Slurm cluster is up: start the test cluster with `sudo slurm/start.sh`",
    ),
]


@pytest.fixture(scope="module", autouse=True)
def slurm_env(tmp_path_factory):
    """SLURM_CONF for the clients, and the test session's data cache for the jobs."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", CONF)
        mp.setenv("KDBENCH_CACHE", str(cache))
        mp.setenv("CI", "1")
        yield


def kdbench(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "kdbench.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def sweep_command(s: SimpleNamespace, *extra) -> list:
    return ["sweep", "run", s.spec, "--executor", "slurm", "--profile", PROFILE, "--wait",
            "--poll", "1", "--results", s.results, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> SimpleNamespace:
    """The CI sweep, run once through Slurm: 1 teacher, 2 methods x 2 seeds, 1 failing run."""
    root = tmp_path_factory.mktemp("slurm-sweep")
    (root / "ci.yaml").write_text(SPEC)
    s = SimpleNamespace(spec=root / "ci.yaml", results=root / "results")
    s.plan = expand(load_spec(s.spec))
    s.started = datetime.now()
    s.first = kdbench(*sweep_command(s))
    s.ended = datetime.now()
    return s


def sacct(job_ids: list[str]) -> dict[str, dict]:
    """Submit, Eligible, Start and End (datetimes) and State of each job (array tasks too)."""
    arrays = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    fields = "JobID,State,Submit,Eligible,Start,End"
    out = subprocess.run(
        ["sacct", "-X", "--parsable2", "--noheader", f"--format={fields}", f"--jobs={arrays}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = {}
    for line in out.splitlines():
        job_id, state, *times = line.split("|")
        stamps = [datetime.fromisoformat(t) if t[:1].isdigit() else None for t in times]
        rows[job_id] = dict(zip(("submit", "eligible", "start", "end"), stamps, strict=True))
        rows[job_id]["state"] = state
    return rows


def first_jobs(results: Path) -> dict[str, str]:
    """The job id of each run's first submission (later ones are retries)."""
    first = {}
    for line in (jobs_folder(results) / "journal.jsonl").read_text().splitlines():
        job = json.loads(line)
        first.setdefault(job["run_id"], job["job_id"])
    return first


def test_every_run_of_the_sweep_leaves_its_result(sweep):
    assert sweep.first.returncode == 1, sweep.first.stderr  # one run failed, on purpose
    records = {r["run_id"]: r for r in load_results(sweep.results)}
    teacher, students = sweep.plan.teachers, sweep.plan.students
    assert len(teacher) == 1 and len(students) == 5 and len(records) == 6
    failing = next(c for c in students if c.train.lr == 1.0e6)
    for cfg in teacher + [c for c in students if c is not failing]:
        record = records[cfg.run_id()]
        assert record["status"] == "done", record.get("error")
        assert [e["epoch"] for e in record["history"]] == [1, 2]
        assert 0.0 <= record["best"]["test"]["auc"] <= 1.0
        assert (sweep.results / record["checkpoint"]).exists()
    kd = [c for c in students if c.method.name in ("kd", "two-in-one")]
    assert {records[c.run_id()]["config"]["teacher"]["run"] for c in kd} == {teacher[0].run_id()}
    failed = records[failing.run_id()]
    assert failed["status"] == "failed" and "diverged at epoch 1" in failed["error"]
    assert "6 runs: 5 done, 1 failed" in sweep.first.stderr
    assert f"kdbench report {sweep.results}" in sweep.first.stderr


def test_students_start_after_their_teacher_succeeded(sweep):
    jobs = first_jobs(sweep.results)
    times = sacct(list(jobs.values()))
    teacher = times[jobs[sweep.plan.teachers[0].run_id()]]
    for cfg in sweep.plan.students:
        student = times[jobs[cfg.run_id()]]
        assert student["state"] in ("COMPLETED", "FAILED")
        if cfg.teacher is not None:
            assert student["start"] >= teacher["end"]


def test_a_rerun_submits_nothing(sweep):
    before = (jobs_folder(sweep.results) / "journal.jsonl").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in (sweep.results / "runs").glob("*.json")}
    again = kdbench(*sweep_command(sweep))
    assert "5 done, 1 failed; submitting 0" in again.stderr, again.stderr
    assert again.returncode == 1  # the failure is still there, and still reported
    assert (jobs_folder(sweep.results) / "journal.jsonl").read_text() == before
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_status_shows_each_run_and_the_failure(sweep):
    status = kdbench("sweep", "status", sweep.spec, "--results", sweep.results)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    failing = next(c for c in sweep.plan.students if c.train.lr == 1.0e6).run_id()
    assert "failed" in next(line for line in lines if failing in line)
    done = [line for line in lines if " done " in line]
    assert len(done) == 5 and "5 done, 1 failed" in status.stdout


def test_retry_failed_resubmits_only_the_failed_run(sweep):
    journal = jobs_folder(sweep.results) / "journal.jsonl"
    before = journal.read_text().splitlines()
    retry = kdbench(*sweep_command(sweep, "--retry-failed"))
    assert "submitting 1" in retry.stderr, retry.stderr
    added = [json.loads(line) for line in journal.read_text().splitlines()[len(before) :]]
    failing = next(c for c in sweep.plan.students if c.train.lr == 1.0e6).run_id()
    assert [job["run_id"] for job in added] == [failing]
    assert read_result(sweep.results, failing)["status"] == "failed"  # diverges again


def test_a_preempted_job_resumes_from_its_checkpoint_with_the_same_result(tmp_path):
    """Two copies of one run: one is preempted (submitit's ``_interrupt``) after its first
    epoch, requeued by Slurm and resumed; both must end with the same history."""
    cfg = resolve_teacher(
        build_config(load_preset("smoke"), ["train.epochs=5", "data.params.videos=120"])
    )
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    job_of = {}
    for results in (cut, whole):
        slurm = Slurm(Sweep("requeue", Plan(students=[cfg]), results, profile=PROFILE))
        (job,) = slurm.submit([RunStatus(cfg, "student")], []).jobs
        job_of[results] = submitit.SlurmJob(jobs_folder(results) / "%j", job.job_id)
    last = checkpoint_dir(cut, cfg.run_id()) / "last.pt"
    wait_until(lambda: last.exists(), 300, job_of[cut])  # written whole, after epoch 1
    assert read_result(cut, cfg.run_id()) is None
    interrupted = datetime.now()
    job_of[cut]._interrupt()  # SIGTERM then USR2, as a preemption
    outcome = job_of[cut].result()  # waits for the requeued job
    restarted = sacct([job_of[cut].job_id])[job_of[cut].job_id]["start"]
    print(f"preempted -> requeued job started: {(restarted - interrupted).total_seconds():.0f} s")
    assert outcome["requeues"] == 1 and 1 <= outcome["resumed_from_epoch"] < 5
    assert job_of[whole].result()["requeues"] == 0
    a, b = read_result(cut, cfg.run_id()), read_result(whole, cfg.run_id())
    assert a["status"] == b["status"] == "done"
    assert [e["epoch"] for e in a["history"]] == [1, 2, 3, 4, 5]
    history = [[{k: e[k] for k in ("epoch", "train", "val", "test")} for e in r["history"]]
               for r in (a, b)]  # fmt: skip
    assert json.dumps(history[0]) == json.dumps(history[1])  # NaN equal to NaN
    assert "resuming after epoch" in job_of[cut].stdout()


def wait_until(condition, timeout_s: float, job: submitit.SlurmJob) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, f"timed out; job log:\n{job.stderr()}"
        time.sleep(0.2)


def test_scheduler_overhead_per_run(sweep):
    """Prints where each run's time went; a job with free resources starts within seconds."""
    jobs = first_jobs(sweep.results)
    times = sacct(list(jobs.values()))
    rows = []
    for cfg in sweep.plan.runs():
        t, record = times[jobs[cfg.run_id()]], read_result(sweep.results, cfg.run_id())
        if record["status"] != "done":  # the failing run's record is its retry's
            continue
        rows.append({
            "run": cfg.run_id(),
            "queued_s": (t["start"] - t["eligible"]).total_seconds(),
            "job_s": (t["end"] - t["start"]).total_seconds(),
            "run_s": record["wall_time_s"],
        })  # fmt: skip
    first = min(t["submit"] for t in times.values())
    last = max(t["end"] for t in times.values())
    print(f"CI sweep: {len(jobs)} runs, wall time {(sweep.ended - sweep.started).seconds} s")
    print(f"command start -> first submission: {(first - sweep.started).total_seconds():.0f} s")
    print(f"last job end -> command exit:      {(sweep.ended - last).total_seconds():.0f} s")
    print("run           eligible->start  job (start->end)  run (harness)  overhead")
    for r in rows:
        overhead = r["job_s"] - r["run_s"]
        print(f"{r['run']}  {r['queued_s']:>14.0f}  {r['job_s']:>16.0f}  {r['run_s']:>13.1f}"
              f"  {overhead:>8.1f}")  # fmt: skip
    teacher = rows[0]
    assert teacher["queued_s"] <= 10  # an idle cluster starts the first job at once


DDP_SPEC = """\
name: ddp
base:
  student: {name: resnet10t}
  data: {name: synthff, params: {videos: 80}, batch_size: 16}
  train: {epochs: 2, optimizer: sgd, lr: 0.002, precision: fp32}
grid:
  method: [vanilla]
  train.devices: [1, 2]
"""


def test_a_two_process_run_is_one_job_of_two_tasks_and_trains_what_one_does(tmp_path):
    """``train.devices: 2`` through Slurm: one job of 2 tasks (``--ntasks-per-node 2``), whose
    processes meet through submitit's ``TorchDistributedEnvironment`` (gloo), against the same
    run on 1 process in the same sweep; the tolerance is test_distributed's."""
    profile = tmp_path / "ddp-profile.yaml"
    profile.write_text(PROFILE.read_text().replace("mem: 1G", "mem: 4G"))  # 2 processes
    (tmp_path / "ddp.yaml").write_text(DDP_SPEC)
    results = tmp_path / "results"
    done = kdbench("sweep", "run", tmp_path / "ddp.yaml", "--executor", "slurm",
                   "--profile", profile, "--wait", "--poll", "1", "--results", results)  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = {r["config"]["train"]["devices"]: r for r in load_results(results)}
    one, two = records[1], records[2]
    assert (one["processes"], two["processes"]) == (1, 2)
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["train"]["ce"] == pytest.approx(a["train"]["ce"], rel=1e-4)
    for name, value in one["best"]["test"].items():
        assert two["best"]["test"][name] == pytest.approx(value, abs=1e-6), name
    jobs = first_jobs(results)
    steps = subprocess.run(
        ["sacct", "--parsable2", "--noheader", "--format=JobID,NTasks",
         f"--jobs={jobs[two['run_id']].split('_')[0]}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert any(line.endswith("|2") for line in steps.splitlines()), steps  # the srun step: 2
