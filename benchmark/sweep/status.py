"""Where each run of a sweep stands: its result on disk, then its latest job in the journal and
the scheduler; and which runs to (re)submit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from kdbench.config import RunConfig
from kdbench.registry import BACKENDS
from kdbench.results import read_result
from kdbench.sweep.journal import Job, JobState, job_paths, latest_jobs
from kdbench.sweep.plan import Plan

STATES = ("done", "running", "queued", "failed", "missing")
UNDER_WAY = ("queued", "running")
INTERRUPTED = "interrupted"  # the status of a run stopped by Ctrl-C or SIGTERM: resubmitted
RESUMES = "resumes from its last epoch"


@dataclass
class RunStatus:
    """Where one run of a sweep stands: ``state`` is one of STATES."""

    cfg: RunConfig
    role: str  # teacher | student
    state: str = "missing"
    detail: str = ""  # the error of a failed run; the job and the scheduler's word otherwise
    job: Job | None = None

    @cached_property
    def run_id(self) -> str:
        return self.cfg.run_id()

    @property
    def teacher_run(self) -> str | None:
        return self.cfg.teacher.run if self.cfg.teacher else None


def run_states(plan: Plan, results: Path, scheduler: bool = True) -> list[RunStatus]:
    """Where every run of ``plan`` stands, from its result JSON and its latest job.

    A finished result wins; then a job still queued or running (a retry of a failed run). An
    interrupted run (its record says so, or this sweep cancelled its local job on Ctrl-C) is
    missing again: the next sweep run resumes it. Then a failed result; a job that ended without
    writing one (cancelled by the scheduler, timed out, killed) counts as failed too.
    ``scheduler=False`` reads the results only. Raises ``SchedulerError`` when the scheduler
    cannot be asked.
    """
    states = [RunStatus(cfg, role) for role, cfg in plan.roles()]
    records = {s.run_id: read_result(results, s.run_id) for s in states}
    unfinished = {s.run_id for s in states if (records[s.run_id] or {}).get("status") != "done"}
    jobs = latest_jobs(results) if scheduler else {}
    jobs = {run_id: job for run_id, job in jobs.items() if run_id in unfinished}
    live = job_states(results, jobs.values())
    states = [
        classify(s, records[s.run_id], jobs.get(s.run_id), live.get(s.run_id), results)
        for s in states
    ]
    return note_blocked(states, {run_id for run_id, record in records.items() if record})


def job_states(results: Path, jobs: Iterable[Job]) -> dict[str, JobState]:
    """Where each job is now, by run id: asked of the backend that submitted it, once for all
    its jobs. Raises ``SchedulerError`` when a scheduler cannot be asked."""
    by_backend: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_backend[job.executor].append(job)
    states = {}
    for name, own in by_backend.items():
        states |= BACKENDS.get(name).job_states(results, own)
    return states


def classify(
    status: RunStatus, record: dict | None, job: Job | None, live: JobState | None, results: Path
) -> RunStatus:
    if record and record.get("status") == "done":
        return replace(status, state="done", detail="")
    if job and live and live.phase in UNDER_WAY:
        detail = f"{job.executor} job {job.job_id}: {live.word}"
        return replace(status, state=live.phase, detail=detail, job=job)
    if record and record.get("status") == INTERRUPTED:
        return replace(status, state="missing", detail=f"{INTERRUPTED}: {RESUMES}", job=job)
    if record:
        return replace(status, state="failed", detail=record.get("error", "failed"), job=job)
    if job and job.cancelled:
        detail = f"{job.executor} job {job.job_id} cancelled by the sweep: {RESUMES}"
        return replace(status, state="missing", detail=detail, job=job)
    if job and live:
        detail = f"{job.executor} job {job.job_id} ended ({live.word}) without a result"
        log = job_paths(results, job.job_id).stderr
        detail += f"; log: {log}" if log.exists() else ""
        return replace(status, state="failed", detail=detail, job=job)
    return status


def note_blocked(states: list[RunStatus], with_result: set[str]) -> list[RunStatus]:
    """A student without a result whose teacher failed says so (its job, if any, was cancelled
    by Slurm: its ``afterok`` dependency can never be met)."""
    failed = {s.run_id for s in states if s.state == "failed"}
    blocked = [
        s.run_id
        for s in states
        if s.teacher_run in failed and s.run_id not in with_result and s.state != "running"
    ]
    return [
        replace(s, detail=f"teacher {s.teacher_run} failed") if s.run_id in blocked else s
        for s in states
    ]


def blocked_by(student: RunStatus, by_id: dict[str, RunStatus], starting: set[str]) -> str | None:
    """Why ``student`` cannot run (its teacher failed and is not retried), or None."""
    teacher = by_id.get(student.teacher_run)
    if teacher is None or teacher.state == "done" or teacher.state in UNDER_WAY:
        return None
    if teacher.run_id in starting:
        return None
    return f"teacher {teacher.run_id} {teacher.state}; --retry-failed retries it"


def to_submit(
    states: list[RunStatus], retry_failed: bool = False, rerun: bool = False
) -> list[RunStatus]:
    """Runs to (re)submit: missing ones, failed ones with ``retry_failed``, and every run not
    under way with ``rerun``."""
    wanted = {"missing", "failed"} if retry_failed else {"missing"}
    wanted |= {"done", "failed"} if rerun else set()
    return [s for s in states if s.state in wanted]


def counts(states: list[RunStatus]) -> dict[str, int]:
    """How many runs are in each state (every state listed, zeros included)."""
    return {state: sum(s.state == state for s in states) for state in STATES}
