"""Sweeps: grid expansion, teachers as runs, presets, where runs stand (results, jobs), and
submission: Slurm arrays with afterok (a stand-in sbatch), local and debug executors end to end,
and a backend registered from this file."""

import json
import os
import pickle
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import cloudpickle
import pytest
import torch
import yaml

import kdbench.train.loop as loop
from kdbench.cli import main
from kdbench.config import ConfigError, build_config, load_preset
from kdbench.registry import BACKENDS
from kdbench.results import load_results, read_result, run_path, write_json
from kdbench.sweep.backends import Backend, Submitted, Sweep
from kdbench.sweep.backends.slurm import Slurm, load_profile
from kdbench.sweep.journal import (
    JOURNAL,
    Job,
    JobState,
    SchedulerError,
    job_paths,
    jobs_folder,
    latest_jobs,
    record_jobs,
)
from kdbench.sweep.plan import Plan, expand
from kdbench.sweep.runner import TrainJob
from kdbench.sweep.select import pick
from kdbench.sweep.spec import load_spec, merge
from kdbench.sweep.status import counts, job_states, run_states, to_submit

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "student": {"name": "resnet10t"},
    "teacher": {"name": "resnet18", "train": {"epochs": 3}},
    "train": {"epochs": 2},
}


def test_grid_expands_and_each_distinct_teacher_is_one_run():
    spec = {
        "base": BASE,
        "grid": {"data.params.quality": ["hq", "lq"], "method": ["vanilla", "kd"], "seed": [0, 1]},
    }
    plan = expand(spec)
    assert len(plan.students) == 8
    assert len(plan.teachers) == 2  # one per data config, shared by both seeds
    by_quality = {t.data.params["quality"]: t for t in plan.teachers}
    for cfg in plan.students:
        if cfg.method.name == "vanilla":
            assert cfg.teacher is None
        else:
            teacher = by_quality[cfg.data.params["quality"]]
            assert cfg.teacher.run == teacher.run_id()
    t = plan.teachers[0]
    assert (t.student.name, t.method.name, t.train.epochs, t.seed) == ("resnet18", "vanilla", 3, 0)


def test_method_entries_and_per_method_parameters():
    spec = {
        "base": BASE,
        "grid": {"method": ["kd", {"name": "kd", "params": {"temperature": 2.0}}]},
        "methods": {"kd": {"temperature": 8.0, "alpha": 0.5}},
    }
    params = [cfg.method.params for cfg in expand(spec).students]
    assert params == [{"temperature": 8.0, "alpha": 0.5}, {"temperature": 2.0, "alpha": 0.5}]


def test_duplicate_points_are_one_run():
    spec = {"base": BASE, "grid": {"seed": [0, 0]}, "extra": [{"seed": 0}]}
    assert len(expand(spec).students) == 1


def test_extends_merges_mappings_and_replaces_lists():
    parent = {
        "base": {"train": {"epochs": 2, "lr": 0.1}},
        "grid": {"seed": [0, 1], "method": ["kd"]},
    }
    child = {"base": {"train": {"epochs": 5}}, "grid": {"seed": [7]}}
    assert merge(parent, child) == {
        "base": {"train": {"epochs": 5, "lr": 0.1}},
        "grid": {"seed": [7], "method": ["kd"]},
    }


def test_demo_is_a_one_seed_slice_of_short():
    paper, demo = expand(load_spec(preset="short")), expand(load_spec(preset="demo"))
    assert {c.seed for c in paper.students} == {0, 1, 2}
    assert {c.seed for c in demo.students} == {0}
    assert {c.run_id() for c in demo.runs()} <= {c.run_id() for c in paper.runs()}
    methods = {(c.method.name, c.method.params.get("homogenize")) for c in paper.students}
    assert ("two-in-one", "pcgrad") in methods and ("feat-both", None) in methods
    assert {c.method.name for c in demo.students} == {m for m, _ in methods}
    assert len(paper.students) == 2 * 14 * 3 and len(paper.teachers) == 2


def test_teacher_ablation_shares_the_short_lq_teacher():
    paper, ablation = (
        expand(load_spec(preset="short")),
        expand(load_spec(preset="teacher-ablation")),
    )
    runs = ablation.students
    assert {(c.student.kwargs.get("branch"), c.seed) for c in runs} == {
        (branch, seed) for branch in ("both", "spatial", "frequency") for seed in (0, 1, 2)
    }
    lq_teacher = next(t for t in paper.teachers if t.data.params["quality"] == "lq")
    assert lq_teacher.run_id() in {c.run_id() for c in runs}


def test_paper_limits_the_students_data_not_the_teachers():
    paper = expand(load_spec(preset="paper"))
    assert len({c.seed for c in paper.students}) >= 5
    assert {c.data.train_fraction for c in paper.students} == {0.2}
    assert {t.data.train_fraction for t in paper.teachers} == {1.0}
    assert len(paper.teachers) == 2  # one per quality, shared by every method and seed
    for student in filter(lambda c: c.teacher, paper.students):  # vanilla has none
        teacher = next(t for t in paper.teachers if t.run_id() == student.teacher.run)
        assert teacher.data.params == student.data.params  # the same corpus, all of it
    names = {(c.method.name, c.method.params.get("homogenize")) for c in paper.students}
    assert {("vanilla", None), ("kd", None), ("feat-spatial", None), ("feat-both", None)} <= names
    assert {h for m, h in names if m == "two-in-one"} == {"none", "magnitude", "pcgrad"}


def test_unknown_sweep_key_is_an_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: {}\ngrids: {seed: [0]}\n")
    with pytest.raises(ConfigError, match=r"sweep keys \['grids'\] are not known"):
        load_spec(path)


# --- specs and presets ---------------------------------------------------------------------


def test_the_smoke_sweep_is_one_teacher_and_two_methods_by_two_seeds():
    plan = expand(load_spec(preset="smoke"))
    assert len(plan.teachers) == 1 and len(plan.students) == 4
    assert {(c.method.name, c.seed) for c in plan.students} == {
        (m, s) for m in ("kd", "two-in-one") for s in (0, 1)
    }
    smoke_run = build_config(load_preset("smoke"))  # its base is the `smoke` run preset
    assert all(c.data == smoke_run.data and c.train == smoke_run.train for c in plan.students)
    assert all(c.teacher.run == plan.teachers[0].run_id() for c in plan.students)


def test_overrides_apply_to_the_spec_after_extends(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: smoke\nextra: [{method: vanilla, seed: 9}]\n")
    spec = load_spec(path, overrides=["base.train.epochs=1", "grid.seed=[3]"])
    assert "name" not in spec  # the parent's name is not this sweep's
    plan = expand(spec)
    assert {(c.method.name, c.seed) for c in plan.students} == {
        ("kd", 3), ("two-in-one", 3), ("vanilla", 9)
    }  # fmt: skip
    assert {c.train.epochs for c in plan.students} == {1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grid: {seed: 0}", r"grid\.seed: expected a non-empty list of values, got 0"),
        ("base: 3", r"base: expected a mapping or a run preset's name, got 3"),
        ("base: smok", r"unknown run preset 'smok'; did you mean 'smoke'"),
        ("extra: {seed: 1}", r"extra: expected a list of mappings"),
        ("extends: papr", r"unknown sweep preset 'papr'; did you mean 'paper'"),
    ],
)
def test_a_malformed_spec_says_what_was_expected(text, message, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_spec(path)


def test_a_spec_comes_from_a_file_or_a_preset_not_both(tmp_path):
    with pytest.raises(ConfigError, match="either a sweep file or --preset NAME"):
        load_spec(tmp_path / "s.yaml", "smoke")


# --- where runs stand ----------------------------------------------------------------------


def small_plan() -> Plan:
    """A teacher and three students that distil from it (seeds 0-2)."""
    return expand({"base": BASE, "grid": {"method": ["kd"], "seed": [0, 1, 2]}})


def write_record(results, cfg, status, error=None):
    record = {"run_id": cfg.run_id(), "status": status} | ({"error": error} if error else {})
    write_json(run_path(results, cfg.run_id()), record)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch``, ``srun`` and ``sacct`` stand-ins on PATH: sbatch numbers jobs 1, 2, ... and
    keeps each script as sbatch-N.sh; sacct prints ``sacct.txt``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": 'n=$(ls "$FAKE_SLURM"/sbatch-*.sh 2>/dev/null | wc -l); n=$((n + 1))\n'
        'cp "$1" "$FAKE_SLURM/sbatch-$n.sh"\necho "Submitted batch job $n"\n',
        "srun": "exit 0\n",
        "sacct": 'cat "$FAKE_SLURM/sacct.txt"\n',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
    return tmp_path


def test_states_come_from_results_then_from_the_scheduler(tmp_path, fake_slurm):
    plan, results = small_plan(), tmp_path / "results"
    teacher, (s0, s1, s2) = plan.teachers[0], plan.students
    write_record(results, teacher, "done")
    write_record(results, s0, "failed", "ValueError: boom")
    write_record(results, s1, "failed", "ValueError: boom")  # and retried: job 7_1 runs
    now = time.time()
    record_jobs(results, [Job(s1.run_id(), "slurm", "7_0", now - 60),
                          Job(s1.run_id(), "slurm", "7_1", now),
                          Job(s2.run_id(), "slurm", "8", now)])  # fmt: skip
    (fake_slurm / "sacct.txt").write_text(
        "JobID|State\n7_0|FAILED\n7_1|RUNNING\n8|CANCELLED by 0\n"
    )
    log = job_paths(results, "8").stderr  # job 8 started, then was cancelled
    log.parent.mkdir(parents=True)
    log.write_text("slurmstepd: error: *** JOB 8 CANCELLED ***\n")
    states = {s.run_id: s for s in run_states(plan, results)}
    assert states[teacher.run_id()].state == "done"
    assert (states[s0.run_id()].state, states[s0.run_id()].detail) == ("failed", "ValueError: boom")
    assert (states[s1.run_id()].state, states[s1.run_id()].detail) == (
        "running",
        "slurm job 7_1: RUNNING",
    )
    assert states[s2.run_id()].state == "failed"
    assert "job 8 ended (CANCELLED) without a result; log: " in states[s2.run_id()].detail
    assert states[s2.run_id()].detail.endswith(str(log))


def test_pending_array_tasks_are_queued_and_unlisted_new_jobs_too(tmp_path, fake_slurm):
    results = tmp_path / "results"
    now = time.time()
    jobs = [Job("a", "slurm", "9_0", now), Job("b", "slurm", "9_3", now),
            Job("c", "slurm", "10", now), Job("d", "slurm", "4", now - 3600),
            Job("e", "slurm", "11_5", now)]  # fmt: skip
    (fake_slurm / "sacct.txt").write_text(
        "JobID|State\n9_0|RUNNING\n9_0.batch|COMPLETED\n9_[1-3%2]|PENDING\n11_[0,4-6]|PENDING\n"
    )
    states = job_states(results, jobs)
    assert states["e"] == JobState("queued", "PENDING")
    assert states["a"] == JobState("running", "RUNNING")
    assert states["b"] == JobState("queued", "PENDING")
    assert states["c"] == JobState("queued", "SUBMITTED")  # not in accounting yet
    assert states["d"] == JobState("ended", "UNKNOWN")  # an hour old and unknown: gone


def test_a_failing_sacct_is_an_error_not_a_guess(tmp_path, fake_slurm):
    (fake_slurm / "bin" / "sacct").write_text("#!/bin/sh\necho 'no accounting' >&2\nexit 1\n")
    with pytest.raises(SchedulerError, match=r"sacct failed \(no accounting\): .*slurmdbd"):
        job_states(tmp_path, [Job("a", "slurm", "1", time.time())])


def test_a_local_job_whose_process_is_gone_was_interrupted(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    job = Job("a", "local", str(dead.pid), time.time())
    assert job_states(tmp_path, [job])["a"] == JobState("ended", "INTERRUPTED")


def test_missing_and_failed_runs_are_submitted_and_students_of_a_failed_teacher_wait(tmp_path):
    plan, results = small_plan(), tmp_path / "results"
    teacher, (s0, s1, s2) = plan.teachers[0], plan.students
    write_record(results, teacher, "failed", "RuntimeError: out of memory")
    write_record(results, s0, "done")
    states = run_states(plan, results)
    assert [s.run_id for s in to_submit(states)] == [s1.run_id(), s2.run_id()]
    assert [s.run_id for s in to_submit(states, retry_failed=True)] == [
        teacher.run_id(), s1.run_id(), s2.run_id()
    ]  # fmt: skip
    blocked = {s.run_id: s.detail for s in states if s.state == "missing"}
    assert blocked == {r.run_id(): f"teacher {teacher.run_id()} failed" for r in (s1, s2)}
    assert counts(states) == {"done": 1, "running": 0, "queued": 0, "failed": 1, "missing": 2}


def test_a_student_cancelled_because_its_teacher_failed_says_so(tmp_path, fake_slurm):
    plan, results = small_plan(), tmp_path / "results"
    teacher, (s0, *_) = plan.teachers[0], plan.students
    write_record(results, teacher, "failed", "ValueError: Input contains NaN.")
    record_jobs(results, [Job(s0.run_id(), "slurm", "3_0", time.time())])
    (fake_slurm / "sacct.txt").write_text("JobID|State\n3_0|CANCELLED by 0\n")
    student = next(s for s in run_states(plan, results) if s.run_id == s0.run_id())
    assert (student.state, student.detail) == ("failed", f"teacher {teacher.run_id()} failed")


def test_journal_keeps_every_submission_and_the_last_one_wins(tmp_path):
    record_jobs(tmp_path, [Job("a", "slurm", "1", 1.0), Job("b", "slurm", "2_0", 1.0)])
    record_jobs(tmp_path, [Job("a", "slurm", "5", 2.0)])
    assert len((jobs_folder(tmp_path) / JOURNAL).read_text().splitlines()) == 3
    assert {r: j.job_id for r, j in latest_jobs(tmp_path).items()} == {"a": "5", "b": "2_0"}


# --- submission --------------------------------------------------------------------------


def two_teacher_plan() -> Plan:
    return expand({"base": BASE, "grid": {"data.params.quality": ["hq", "lq"],
                                          "method": ["vanilla", "kd"]}})  # fmt: skip


def slurm(plan: Plan, results: Path) -> Slurm:
    return Slurm(Sweep("t", plan, results, profile=ROOT / "slurm" / "local.yaml"))


def sbatch_lines(fake_slurm, n: int) -> list[str]:
    return [line for line in (fake_slurm / f"sbatch-{n}.sh").read_text().splitlines()
            if line.startswith("#SBATCH")]  # fmt: skip


def test_slurm_gets_a_teacher_array_then_students_that_wait_for_their_teacher(tmp_path, fake_slurm):
    plan, results = two_teacher_plan(), tmp_path / "results"
    hq, lq = plan.teachers
    write_record(results, hq, "done")
    states = run_states(plan, results)
    submitted = slurm(plan, results).submit(to_submit(states), states)
    jobs, skipped = submitted.jobs, submitted.skipped
    assert skipped == []
    assert "#SBATCH --array=0-2%2" not in sbatch_lines(fake_slurm, 1)  # one teacher: one job
    no_wait, after_lq = sbatch_lines(fake_slurm, 2), sbatch_lines(fake_slurm, 3)
    assert "#SBATCH --array=0-2%2" in no_wait  # vanilla x2 and kd on the finished hq teacher
    assert not any("--dependency" in line for line in no_wait)
    assert "#SBATCH --dependency=afterok:1" in after_lq
    assert {"#SBATCH --requeue", "#SBATCH --kill-on-invalid-dep=yes"} <= set(after_lq)
    job_of = {j.run_id: j.job_id for j in jobs}
    assert job_of[lq.run_id()] == "1"
    kd_lq = next(c for c in plan.students if c.method.name == "kd" and c.teacher.run == lq.run_id())
    assert job_of[kd_lq.run_id()] == "3"
    assert sorted(job_of.values()) == ["1", "2_0", "2_1", "2_2", "3"]
    assert {r: j.job_id for r, j in latest_jobs(results).items()} == job_of


def test_a_run_of_two_processes_is_one_job_of_two_tasks(tmp_path, fake_slurm):
    """``train.devices: 2`` students go in their own array, each job 2 tasks on 1 node (srun
    starts the run's two processes); the 1-process runs keep 1 task."""
    spec = {"base": BASE, "grid": {"method": ["vanilla"], "train.devices": [1, 2]}}
    plan, results = expand(spec), tmp_path / "results"
    states = run_states(plan, results)
    slurm(plan, results).submit(to_submit(states), states)
    one, two = sbatch_lines(fake_slurm, 1), sbatch_lines(fake_slurm, 2)
    assert "#SBATCH --ntasks-per-node=1" in one and "#SBATCH --ntasks-per-node=2" in two
    assert "#SBATCH --nodes=1" in two
    assert not (fake_slurm / "sbatch-3.sh").exists()


def test_a_run_that_does_not_split_over_the_nodes_queues_nothing(tmp_path, fake_slurm):
    profile = tmp_path / "two-nodes.yaml"
    profile.write_text("partition: debug\nnodes: 2\n")
    spec = {"base": BASE, "grid": {"method": ["vanilla"], "train.devices": [3]}}
    plan, results = expand(spec), tmp_path / "results"
    states = run_states(plan, results)
    backend = Slurm(Sweep("t", plan, results, profile=profile))
    with pytest.raises(
        ConfigError, match=r"train\.devices 3 does not split over the profile's nodes 2"
    ):
        backend.submit(to_submit(states), states)
    assert not list(fake_slurm.glob("sbatch-*.sh"))


def test_students_of_a_failed_teacher_are_left_out_with_the_reason(tmp_path, fake_slurm):
    plan, results = two_teacher_plan(), tmp_path / "results"
    hq, lq = plan.teachers
    write_record(results, hq, "done")
    write_record(results, lq, "failed", "RuntimeError: node died")
    states = run_states(plan, results)
    submitted = slurm(plan, results).submit(to_submit(states), states)
    jobs, skipped = submitted.jobs, submitted.skipped
    assert len(jobs) == 3 and not (fake_slurm / "sbatch-2.sh").exists()  # one array only
    [(student, reason)] = skipped
    assert student.teacher_run == lq.run_id()
    assert reason == f"teacher {lq.run_id()} failed; --retry-failed retries it"


def test_a_refused_array_leaves_the_queued_ones_journaled_and_a_rerun_waits_for_them(
    tmp_path, fake_slurm, capsys
):
    sbatch = fake_slurm / "bin" / "sbatch"
    working = sbatch.read_text()
    refuse = (
        'if [ $n -ge 2 ]; then echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2; exit 1; fi'
    )
    sbatch.write_text(working.replace("cp ", f"{refuse}\ncp ", 1))  # teacher queued, then no
    results = tmp_path / "results"
    args = ["sweep", "run", "--preset", "smoke", "--executor", "slurm", "--profile",
            str(ROOT / "slurm" / "local.yaml"), "--results", str(results)]  # fmt: skip
    assert main(args) == 2
    assert "error: sbatch refused the jobs: QOSMaxSubmitJobPerUserLimit" in capsys.readouterr().err
    teacher = expand(load_spec(preset="smoke")).teachers[0]
    assert {r: j.job_id for r, j in latest_jobs(results).items()} == {teacher.run_id(): "1"}
    sbatch.write_text(working)
    (fake_slurm / "sacct.txt").write_text("JobID|State\n1|PENDING\n")
    assert main(args) == 0
    assert "5 runs; 1 queued, 4 missing; submitting 4" in capsys.readouterr().err
    assert "#SBATCH --dependency=afterok:1" in sbatch_lines(fake_slurm, 2)
    assert len(latest_jobs(results)) == 5


# --- profiles and the job callable -------------------------------------------------------


def test_profiles_map_to_sbatch_options_and_typos_are_caught(tmp_path):
    params = load_profile(ROOT / "slurm" / "example.yaml").parameters()
    assert params["gpus_per_node"] == 1 and params["mem"] == "32G" and params["time"] == 240
    assert params["additional_parameters"]["exclude"] == "node013,node014"
    assert params["setup"][0] == "module load cuda/12.4"
    assert "requeues" not in params and "python" not in params
    (tmp_path / "p.yaml").write_text("partiton: gpu\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'profile\.partiton'; did you mean"):
        load_profile(tmp_path / "p.yaml")
    with pytest.raises(ConfigError, match=r"cluster profile '.*nope\.yaml' not found"):
        load_profile(tmp_path / "nope.yaml")


def test_a_checkpointed_job_resubmits_itself_with_its_requeue_count(tmp_path, tiny):
    cfg = tiny()
    delayed = TrainJob(tmp_path).checkpoint(cfg)
    again = pickle.loads(cloudpickle.dumps(delayed))  # as submitit writes it for the requeue
    assert isinstance(again.function, TrainJob) and again.function.requeues == 1
    assert again.args[0].run_id() == cfg.run_id()


@pytest.mark.slow
def test_a_requeued_job_resumes_from_the_last_epoch_checkpoint(tmp_path, tiny, monkeypatch):
    cfg = tiny("train.epochs=2")
    real_epoch = loop.train_epoch

    def preempted(setup, epoch, seed, progress):
        if epoch == 1:
            raise KeyboardInterrupt  # the job is stopped during its second epoch
        return real_epoch(setup, epoch, seed, progress)

    monkeypatch.setattr(loop, "train_epoch", preempted)
    with pytest.raises(KeyboardInterrupt):
        TrainJob(tmp_path)(cfg)
    monkeypatch.setattr(loop, "train_epoch", real_epoch)
    outcome = TrainJob(tmp_path)(cfg)
    assert outcome == {
        "run_id": cfg.run_id(), "status": "done", "resumed_from_epoch": 1, "requeues": 0
    }  # fmt: skip
    assert [e["epoch"] for e in read_result(tmp_path, cfg.run_id())["history"]] == [1, 2]


# --- the command line, end to end on this machine ----------------------------------------

CI_SPEC = """\
name: ci
extends: smoke
base: {train: {epochs: 1}, teacher: {train: {epochs: 1}}, data: {params: {videos: 20}}}
extra:
  - {method: vanilla, train.lr: 1.0e+6}  # diverges: the deliberately failing run
"""


def sweep_cli(spec, results, *args, overrides=()) -> list[str]:
    return ["sweep", "run", str(spec), *overrides, "--results", str(results), *args]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The CI sweep (as on Slurm, smaller) through ``--executor local``, 2 runs at a time."""
    root = tmp_path_factory.mktemp("local-sweep")
    (root / "ci.yaml").write_text(CI_SPEC)
    with pytest.MonkeyPatch.context() as mp:  # the autouse cache fixture is per test
        mp.setenv("KDBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        code = main(sweep_cli(root / "ci.yaml", root / "results", "--executor", "local",
                              "--parallel", "2"))  # fmt: skip
    return root / "ci.yaml", root / "results", code


@pytest.mark.slow
def test_the_sweep_runs_with_the_local_executor(local_sweep):
    spec, results, code = local_sweep
    plan = expand(load_spec(spec))
    records = {r["run_id"]: r for r in load_results(results)}
    assert code == 1  # one run failed, on purpose
    assert set(records) == {c.run_id() for c in plan.runs()} and len(records) == 6
    failing = next(c for c in plan.students if c.train.lr == 1.0e6)
    assert records.pop(failing.run_id())["status"] == "failed"
    assert {r["status"] for r in records.values()} == {"done"}
    assert len(latest_jobs(results)) == 6 and {
        j.executor for j in latest_jobs(results).values()
    } == {"local"}
    assert not (results / "jobs" / "%j").exists()  # submitit's placeholder folder is gone


@pytest.mark.slow
def test_a_second_run_submits_nothing(local_sweep, capsys):
    spec, results, _ = local_sweep
    journal = (jobs_folder(results) / JOURNAL).read_text()
    assert main(sweep_cli(spec, results, "--executor", "local")) == 1
    assert "6 runs; 5 done, 1 failed; submitting 0" in capsys.readouterr().err
    assert (jobs_folder(results) / JOURNAL).read_text() == journal


@pytest.mark.slow
def test_the_debug_executor_gives_the_same_results(local_sweep, tmp_path):
    """On as many threads as the local slots had (2 runs at a time: one CPU each): a thread
    count changes the order of floating-point sums, so the last bits."""
    spec, local, _ = local_sweep
    cpus, threads = os.sched_getaffinity(0), torch.get_num_threads()
    one = {slot["cpu"]["threads"] for slot in load_results(local) if "cpu" in slot}
    assert one == {max(len(cpus) // 2, 1)}  # each slot had its share of the CPUs
    os.sched_setaffinity(0, set(sorted(cpus)[: one.pop()]))
    try:
        args = sweep_cli(spec, tmp_path, "--executor", "debug", overrides=["extra=[]"])
        assert main(args) == 0
    finally:
        os.sched_setaffinity(0, cpus)
        torch.set_num_threads(threads)
    debug = load_results(tmp_path)
    assert len(debug) == 5
    for record in debug:
        assert metrics(record) == metrics(read_result(local, record["run_id"]))


def metrics(record: dict) -> str:
    """Every epoch's losses and metrics (not timings), NaN comparing equal to NaN."""
    keep = ("epoch", "train", "val", "test")
    return json.dumps([{k: e[k] for k in keep} for e in record["history"]])


def test_plan_lists_runs_with_ids_and_existing_results(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        yaml.safe_dump({"name": "p", "base": BASE, "grid": {"method": ["kd"], "seed": [0, 1]}})
    )
    plan = expand(load_spec(spec))
    write_record(tmp_path, plan.students[1], "done")
    assert main(["sweep", "plan", str(spec), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sweep p: 1 teacher(s), 2 student runs" in out
    rows = {
        c.run_id(): next(line for line in out.splitlines() if c.run_id() in line)
        for c in plan.runs()
    }
    assert "done" in rows[plan.students[1].run_id()]
    assert (
        "missing" in rows[plan.students[0].run_id()]
        and "teacher" in rows[plan.teachers[0].run_id()]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["grid.method=[kdd]"], "unknown method 'kdd'; did you mean 'kd' or 'rkd' or 'dkd'?"),
        (["--executor", "slurm"], "--executor slurm needs --profile slurm/NAME.yaml"),
        (
            ["--executor", "slurm", "--profile", "slurm/nope.yaml"],
            "cluster profile 'slurm/nope.yaml' not found",
        ),
    ],
)
def test_bad_sweep_input_is_one_line_and_writes_nothing(args, message, tmp_path, capsys):
    assert main(["sweep", "run", "--preset", "smoke", "--results", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@BACKENDS.register("fake")
class Fake(Backend):
    """A backend written in a test file: it "trains" a run by writing a finished record."""

    help = "writes a done record per run"

    def submit(self, todo, states):
        for status in todo:
            write_record(self.sweep.results, status.cfg, "done")
            self.sweep.log(f"fake ran {status.run_id}")
        return Submitted()


def test_a_backend_is_one_registered_class(tmp_path, capsys):
    args = ["sweep", "run", "--preset", "smoke", "--executor", "fake", "--results", str(tmp_path)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "5 runs; 5 missing; submitting 5" in err and "5 runs: 5 done" in err
    assert all(f"fake ran {c.run_id()}" in err for c in expand(load_spec(preset="smoke")).runs())
    assert main(args) == 0
    assert "5 runs; 5 done; submitting 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "run", "--help"])
    assert "fake: writes a done record per run" in " ".join(capsys.readouterr().out.split())


PLUGIN_BACKEND = """
from kdbench.registry import BACKENDS
from kdbench.sweep.backends import Backend, Submitted


@BACKENDS.register("mine")
class Mine(Backend):
    help = "a backend from a --plugin file"

    def submit(self, todo, states):
        self.sweep.log(f"mine got {len(todo)} runs")
        return Submitted()
"""


def test_a_backend_from_a_plugin_file_is_an_executor_choice(tmp_path):
    """``--plugin file.py`` is imported before the parser is built, so ``--executor`` lists
    what it registers (the real console script, in a fresh process)."""
    (tmp_path / "my_backend.py").write_text(PLUGIN_BACKEND)
    kdbench = Path(sys.executable).parent / "kdbench"
    args = ["--plugin", "./my_backend.py", "sweep", "run", "--preset", "smoke"]
    done = subprocess.run(
        [str(kdbench), *args, "--executor", "mine", "--results", "r"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert "mine got 5 runs" in done.stderr, done.stderr
    helped = subprocess.run(
        [str(kdbench), *args, "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert "mine: a backend from a --plugin file" in " ".join(helped.stdout.split())


def tuned(method: str, params: dict, seed: int, val: float, test: float) -> dict:
    config = {"method": {"name": method, "params": params | {"temperature": 4.0}}, "seed": seed}
    return {"config": config, "best": {"val": {"auc": val}, "test": {"auc": test}}}


def test_pick_chooses_on_validation_never_on_test():
    records = [
        tuned("fitnets", {"beta": 10.0}, 0, val=0.70, test=0.99),  # best on test, not on val
        tuned("fitnets", {"beta": 10.0}, 1, val=0.72, test=0.99),
        tuned("fitnets", {"beta": 100.0}, 0, val=0.80, test=0.50),
        tuned("fitnets", {"beta": 100.0}, 1, val=0.78, test=0.50),
        tuned("kd", {"alpha": 0.9}, 0, val=0.6, test=0.6),
    ]
    candidates = pick(records)
    chosen = {c.method: c.setting for c in candidates if c.chosen}
    assert chosen == {"fitnets": {"beta": 100.0}, "kd": {}}  # only what varies is a setting
    best = next(c for c in candidates if c.chosen and c.method == "fitnets")
    assert best.scores == [0.80, 0.78] and best.mean == pytest.approx(0.79)


def test_pick_by_eer_chooses_the_lowest():
    records = [
        tuned("fitnets", {"beta": b}, 0, val=v, test=0.5) for b, v in ((1.0, 0.2), (9.0, 0.3))
    ]
    for r in records:
        r["best"]["val"] = {"eer": r["best"]["val"]["auc"]}
    chosen = [c.setting for c in pick(records, metric="eer") if c.chosen]
    assert chosen == [{"beta": 1.0}]


def test_pick_names_a_missing_metric():
    with pytest.raises(ConfigError, match=r"metric 'f1' is not in the validation metrics \(auc\)"):
        pick([tuned("kd", {}, 0, 0.5, 0.5)], metric="f1")


def test_sweep_pick_prints_the_winner_and_its_methods_block(tmp_path, capsys):
    grid = {"method": [{"name": "kd", "params": {"alpha": a}} for a in (0.5, 0.9)], "seed": [0, 1]}
    spec = tmp_path / "tune.yaml"
    spec.write_text(yaml.safe_dump({"name": "t", "base": BASE, "grid": grid}))
    for cfg in expand(load_spec(spec)).students:
        val = 0.8 if cfg.method.params["alpha"] == 0.5 else 0.6
        best = {"val": {"auc": val + cfg.seed / 100}, "test": {"auc": 1 - val}}
        record = {"run_id": cfg.run_id(), "status": "done", "config": asdict(cfg), "best": best}
        write_json(run_path(tmp_path, cfg.run_id()), record)
    assert main(["sweep", "pick", str(spec), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "methods:\n  kd:\n    alpha: 0.5" in out
    assert "0.8050 ± 0.0071" in out


def test_a_dotted_grid_axis_can_be_overridden(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\nbase: smoke\ngrid:\n  train.lr: [0.1, 0.2]\n  method: [kd]\n  seed: [0]\n"
    )
    loaded = load_spec(spec, overrides=["grid.train.lr=[0.5]", "grid.seed=[1, 2]"])
    assert loaded["grid"]["train.lr"] == [0.5] and "train" not in loaded["grid"]
    assert sorted(cfg.train.lr for cfg in expand(loaded).students) == [0.5, 0.5]


@BACKENDS.register("lingering")
class Lingering(Backend):
    """Detached: a job writes its run's record at once, but stays RUNNING for two more looks
    (a Slurm job still saving submitit's return value)."""

    detached = True
    looks: ClassVar[dict[str, int]] = {}

    def submit(self, todo, states):
        jobs = [Job(s.run_id, "lingering", f"j{k}", time.time()) for k, s in enumerate(todo)]
        for status in todo:
            write_record(self.sweep.results, status.cfg, "done")
        record_jobs(self.sweep.results, jobs)
        return Submitted(jobs)

    @classmethod
    def job_states(cls, results, jobs):
        states = {}
        for job in jobs:
            cls.looks[job.job_id] = cls.looks.get(job.job_id, 0) + 1
            word = "RUNNING" if cls.looks[job.job_id] <= 2 else "COMPLETED"
            states[job.run_id] = JobState("running" if word == "RUNNING" else "ended", word)
        return states


def test_wait_returns_once_the_jobs_have_left_the_scheduler_not_at_their_results(tmp_path):
    plan = expand(load_spec(preset="smoke"))
    sweep = Sweep("smoke", plan, tmp_path, poll_s=0.01, log=lambda line: None)
    backend = Lingering(sweep)
    submitted = backend.submit([s for s in run_states(plan, tmp_path)], [])
    states = backend.wait({job.run_id for job in submitted.jobs})
    assert counts(states)["done"] == 5
    assert Lingering.looks == {job.job_id: 3 for job in submitted.jobs}  # the third said ended
