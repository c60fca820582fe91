"""Where a sweep's runs execute: Slurm job arrays, local subprocesses, or this process (debug).

Every run is one submitit job calling :class:`TrainJob`. On Slurm the whole sweep is queued at
once: one array of teachers, then per teacher one array of its students that starts only after
it succeeded (``afterok``). Locally the teachers run first, then the students, a few at a time.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path

import submitit
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from submitit.core.utils import FailedJobError
from submitit.helpers import Checkpointable, DelayedSubmission

from kdbench.config import ConfigError, RunConfig, from_dict, load_yaml
from kdbench.jobs import Job, JobState, SchedulerError, jobs_folder, record_jobs
from kdbench.registry import load_plugin
from kdbench.results import read_result
from kdbench.sweep import Plan, RunStatus, classify, describe, run_states

EXECUTORS = ("slurm", "local", "debug")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default is 2 min; a local run has no limit
UNDER_WAY = ("queued", "running")


@dataclass
class SlurmProfile:
    """The resources of every job of a sweep on a Slurm cluster (``slurm/NAME.yaml``).

    One job trains one run. Names are ``sbatch``'s (as submitit's SlurmExecutor takes them).
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int | None = None  # per run: 1 gives every run its own GPU
    cpus_per_task: int = 2
    mem: str = "8G"
    time: int = 60  # minutes; a run that needs longer is requeued and resumes
    array_parallelism: int = 64  # runs of one array that may run at once
    signal_delay_s: int = 120  # USR2 this long before the time limit: requeue, then resume
    requeues: int = 3  # time-outs after which a run is not requeued again
    setup: list = field(default_factory=list)  # shell lines before each run (module load ...)
    sbatch: dict = field(default_factory=dict)  # any other sbatch option, e.g. {gres: gpu:a100:1}
    python: str | None = None  # how a node starts Python (default: this interpreter)

    def parameters(self) -> dict:
        """Keyword arguments for ``submitit.SlurmExecutor.update_parameters``."""
        own = {"requeues", "python", "sbatch"}
        params = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in own}
        params = {key: value for key, value in params.items() if value not in (None, [])}
        # --requeue: a job whose node fails comes back too; a student whose teacher failed is
        # cancelled instead of pending forever
        fixed = {"requeue": True, "kill-on-invalid-dep": "yes"}
        return params | {"additional_parameters": fixed | self.sbatch}


def load_profile(path: str | Path) -> SlurmProfile:
    """A cluster profile from YAML; an unknown key is an error that names the known ones."""
    path = Path(path)
    if not path.is_file():
        shipped = ", ".join(str(p) for p in sorted(Path("slurm").glob("*.yaml")))
        raise ConfigError(f"cluster profile {str(path)!r} not found (shipped: {shipped or '-'})")
    return from_dict(SlurmProfile, load_yaml(path, empty_ok=True), "profile")


class TrainJob(Checkpointable):
    """The callable of every job: trains one run into ``results`` and writes its result JSON.

    On preemption or time-out submitit calls ``checkpoint``, which resubmits the same call; the
    harness then resumes from the run's last epoch checkpoint (so at most one epoch is lost).
    ``rerun`` trains a finished run again, once: a requeued job resumes, it does not restart.
    """

    def __init__(self, results: Path, plugins: list[str] = (), rerun: bool = False) -> None:
        self.results = str(Path(results).resolve())
        self.plugins = list(plugins)
        self.rerun = rerun
        self.requeues = 0

    def __call__(self, cfg: RunConfig) -> dict:
        from kdbench.train import run  # torch is imported on the node, not by the submitter

        for module in self.plugins:
            load_plugin(module)
        use_allocated_cpus()
        log = partial(print, flush=True)  # the job's stdout: submitit's log file
        record = run(cfg, Path(self.results), progress=False, rerun=self.rerun, log=log)
        return {
            "run_id": record["run_id"],
            "status": record["status"],
            "resumed_from_epoch": record.get("resumed_from_epoch", 0),
            "requeues": self.requeues,
        }

    def checkpoint(self, cfg: RunConfig) -> DelayedSubmission:
        self.requeues += 1
        self.rerun = False  # the requeued call continues this attempt
        return super().checkpoint(cfg)


def use_allocated_cpus() -> None:
    """Train on the CPUs Slurm gave this job, not on every core of the node (torch's default)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus:
        import torch

        torch.set_num_threads(int(cpus))


def blocked_by(student: RunStatus, by_id: dict[str, RunStatus], starting: set[str]) -> str | None:
    """Why ``student`` cannot run (its teacher failed and is not retried), or None."""
    teacher = by_id.get(student.teacher_run)
    if teacher is None or teacher.state == "done" or teacher.state in UNDER_WAY:
        return None
    if teacher.run_id in starting:
        return None
    return f"teacher {teacher.run_id} {teacher.state}; --retry-failed retries it"


class Tracker:
    """A sweep's progress: a rich bar on a terminal, and one line per finished run."""

    def __init__(
        self, total: int, log: Callable[[str], None], show: bool, console: Console | None = None
    ) -> None:
        self.total, self.log, self.show, self.console = total, log, show, console
        self.bar: Progress | None = None

    def __enter__(self) -> Tracker:
        if self.show:  # on the console that ``log`` prints to, so lines go above the bar
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
            self.bar = Progress(*columns, TimeElapsedColumn(), console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("sweep", total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def finished(self, status: RunStatus) -> None:
        detail = f": {status.detail}" if status.state == "failed" else ""
        self.log(f"{status.state:>6}  {status.run_id}  {describe(status.cfg)}{detail}")
        if self.bar is not None:
            self.bar.advance(self.task)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=text)


def submit_slurm(
    todo: list[RunStatus],
    states: list[RunStatus],
    results: Path,
    profile: SlurmProfile,
    name: str,
    plugins: list[str] = (),
    rerun: bool = False,
) -> tuple[list[Job], list[tuple[RunStatus, str]]]:
    """Queue ``todo`` on Slurm: the teachers in one array, then each teacher's students in one
    array after it (``afterok``). Returns the jobs, and the students left out with the reason.
    Each array is in the journal as soon as it is queued, so no failure can queue it twice."""
    executor = submitit.SlurmExecutor(
        jobs_folder(results) / "%j", max_num_timeout=profile.requeues, python=profile.python
    )
    executor.update_parameters(job_name=f"kdbench-{name}", **profile.parameters())
    submit = partial(submit_array, executor, TrainJob(results, plugins, rerun), results)
    by_id = {s.run_id: s for s in states}
    jobs = submit([s for s in todo if s.role == "teacher"], after=None)
    job_of = {job.run_id: job.job_id for job in jobs}
    groups: dict[str | None, list[RunStatus]] = defaultdict(list)
    skipped = []
    for student in (s for s in todo if s.role == "student"):
        reason = blocked_by(student, by_id, set(job_of))
        if reason:
            skipped.append((student, reason))
        else:
            groups[teacher_job(student, by_id, job_of)].append(student)
    for after, students in groups.items():
        jobs += submit(students, after=after)
    return jobs, skipped


def teacher_job(student: RunStatus, by_id: dict[str, RunStatus], new: dict[str, str]) -> str | None:
    """The Slurm job ``student`` must wait for: its teacher's, unless that run is done."""
    teacher = student.teacher_run
    if teacher in new:
        return new[teacher]
    status = by_id.get(teacher)
    return status.job.job_id if status and status.state in UNDER_WAY else None


def submit_array(
    executor: submitit.SlurmExecutor,
    train: TrainJob,
    results: Path,
    runs: list[RunStatus],
    after: str | None,
) -> list[Job]:
    """One ``map_array`` of ``runs``, to start once job ``after`` succeeded; journaled."""
    if not runs:
        return []
    executor.update_parameters(dependency=f"afterok:{after}" if after else None)
    try:
        submitted = executor.map_array(train, [s.cfg for s in runs])
    except FailedJobError as err:  # sbatch said no: a bad partition, account, ...
        reasons = [line.removeprefix("sbatch: error: ") for line in str(err).strip().splitlines()]
        raise SchedulerError(f"sbatch refused the jobs: {'; '.join(reasons)}") from err
    jobs = [
        Job(s.run_id, "slurm", j.job_id, time.time()) for s, j in zip(runs, submitted, strict=True)
    ]
    record_jobs(results, jobs)
    return jobs


def wait_slurm(
    plan: Plan, results: Path, run_ids: set[str], tracker: Tracker, poll_s: float
) -> list[RunStatus]:
    """Block until every run in ``run_ids`` is done or failed; the sweep's states then."""
    pending = set(run_ids)
    while True:
        states = run_states(plan, results)
        for status in states:
            if status.run_id in pending and status.state not in UNDER_WAY:
                pending.discard(status.run_id)
                tracker.finished(status)
        watched = [s.state for s in states if s.run_id in pending]
        tracker.note(f"{watched.count('running')} running, {watched.count('queued')} queued")
        if not pending:
            return states
        time.sleep(poll_s)


def run_here(
    todo: list[RunStatus],
    states: list[RunStatus],
    results: Path,
    executor: str,
    tracker: Tracker,
    parallel: int | None = None,
    plugins: list[str] = (),
    rerun: bool = False,
) -> list[tuple[RunStatus, str]]:
    """Run ``todo`` on this machine, teachers first; returns the students left out, with why."""
    train = TrainJob(results, plugins, rerun)
    if executor == "local":
        runner = LocalPool(results, train, tracker, parallel)
    else:
        runner = InProcess(results, train, tracker)
    by_id = {s.run_id: s for s in states}
    for status in runner.run([s for s in todo if s.role == "teacher"]):
        by_id[status.run_id] = status
    students, skipped = [], []
    for student in (s for s in todo if s.role == "student"):
        reason = blocked_by(student, by_id, set())
        (skipped.append((student, reason)) if reason else students.append(student))
    runner.run(students)
    return skipped


class LocalPool:
    """``local``: every run is a submitit subprocess here (requeued on USR2 as on Slurm), one
    per slot at a time; on a GPU machine there is one slot per GPU, and each run sees only its own.
    """

    def __init__(
        self, results: Path, train: TrainJob, tracker: Tracker, parallel: int | None = None
    ) -> None:
        import torch

        self.results, self.train, self.tracker = results, train, tracker
        gpus = torch.cuda.device_count()
        slots = [k % gpus if gpus else None for k in range(parallel or gpus or 1)]
        self.executors = [self.executor(gpu) for gpu in slots]

    def executor(self, gpu: int | None) -> submitit.LocalExecutor:
        executor = submitit.LocalExecutor(jobs_folder(self.results) / "%j")
        visible = () if gpu is None else (gpu,)
        executor.update_parameters(
            timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=len(visible), visible_gpus=visible
        )
        return executor

    def run(self, todo: list[RunStatus]) -> list[RunStatus]:
        """Run ``todo``, one per slot at a time; their final states, in finishing order."""
        pending, running, finished = list(todo), {}, []
        try:
            while pending or running:
                for slot, executor in enumerate(self.executors):
                    if slot not in running and pending:
                        running[slot] = self.start(executor, pending.pop(0))
                for slot, (status, job) in list(running.items()):
                    if job.done():
                        del running[slot]
                        finished.append(self.outcome(status, job))
                        self.tracker.finished(finished[-1])
                time.sleep(0.5 if running else 0)
        except KeyboardInterrupt:
            self.cancel(list(running.values()))
            raise
        return finished

    def cancel(self, running: list[tuple[RunStatus, submitit.LocalJob]]) -> None:
        """Stop ``running`` and journal that we did: they resume from their checkpoints on the
        next sweep run, not counted as failed."""
        for _, job in running:
            job.cancel(check=False)
        cancelled = [Job(s.run_id, "local", job.job_id, time.time(), True) for s, job in running]
        record_jobs(self.results, cancelled)

    def start(self, executor: submitit.LocalExecutor, status: RunStatus) -> tuple:
        job = executor.submit(self.train, status.cfg)
        record_jobs(self.results, [Job(status.run_id, "local", job.job_id, time.time())])
        return status, job

    def outcome(self, status: RunStatus, job: submitit.LocalJob) -> RunStatus:
        record = read_result(self.results, status.run_id)
        journal = Job(status.run_id, "local", job.job_id, time.time())
        return classify(status, record, journal, JobState("ended", job.state), self.results)


class InProcess:
    """``debug``: every run in this process, one at a time, through submitit's DebugExecutor
    (breakpoints work; an error opens pdb)."""

    def __init__(self, results: Path, train: TrainJob, tracker: Tracker) -> None:
        self.results, self.train, self.tracker = results, train, tracker
        self.executor = submitit.DebugExecutor(jobs_folder(results) / "%j")

    def run(self, todo: list[RunStatus]) -> list[RunStatus]:
        finished = []
        for status in todo:
            error = ""
            try:
                self.executor.submit(self.train, status.cfg).result()
            except Exception as err:  # the harness recorded it in the run's JSON
                error = f"{type(err).__name__}: {err}"
            record = read_result(self.results, status.run_id)
            if record is None:
                finished.append(replace(status, state="failed", detail=error))
            else:
                finished.append(classify(status, record, None, None, self.results))
            self.tracker.finished(finished[-1])
        return finished
