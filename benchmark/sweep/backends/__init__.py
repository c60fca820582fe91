"""Where a sweep's runs execute, behind one interface: a backend is one file, a ``Backend``
subclass registered in ``kdbench.registry.BACKENDS`` (``--executor NAME``; a plugin adds one
through the entry-point group ``kdbench.backends``).

The shipped ones: ``slurm`` (job arrays; the jobs outlive the command), ``local`` (submitit
subprocesses here) and ``debug`` (this process)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from rich.progress import Progress

from kdbench.console import console, rich_bar, say
from kdbench.sweep.journal import Job, JobState, drop_placeholder, latest_jobs
from kdbench.sweep.plan import Plan, describe
from kdbench.sweep.status import UNDER_WAY, RunStatus, blocked_by, job_states, run_states

Skipped = list[tuple[RunStatus, str]]  # students left out, each with the reason


DRAIN_S = 120  # how long a sweep waits for jobs to leave the scheduler after their results
ENDED = JobState("ended", "")


@dataclass
class Sweep:
    """One ``kdbench sweep run``: its plan and the options a backend may read."""

    name: str
    plan: Plan
    results: Path
    plugins: list[str] = field(default_factory=list)  # modules every job imports first
    rerun: bool = False  # train finished runs again
    parallel: int | None = None  # local: runs at once
    profile: Path | None = None  # slurm: the cluster profile
    poll_s: float = 10  # seconds between looks at the jobs while waiting
    progress: bool = False  # a progress bar (on a terminal)
    log: Callable[[str], None] = say

    def tracker(self, total: int) -> Tracker:
        return Tracker(total, self.log, self.progress)


@dataclass
class Submitted:
    """What ``Backend.submit`` did: the jobs it journaled, the students it left out."""

    jobs: list[Job] = field(default_factory=list)
    skipped: Skipped = field(default_factory=list)


class Backend(ABC):
    """Runs a sweep's runs somewhere. Built from the ``Sweep`` (check its options in
    ``__init__``: nothing is written before), it implements ``submit``. A backend that journals
    jobs (as its registered name) says where they are in ``job_states``; a ``detached`` one
    returns from ``submit`` with its jobs queued, and ``wait`` watches them."""

    detached: ClassVar[bool] = False  # True: the jobs go on when this command stops
    help: ClassVar[str] = ""  # one line for `kdbench sweep run --help`

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep

    @abstractmethod
    def submit(self, todo: list[RunStatus], states: list[RunStatus]) -> Submitted:
        """Start the runs ``todo`` (``states``: every run of the sweep), a teacher before the
        students that need it. A backend that is not detached returns once they all ended."""

    @classmethod
    def job_states(cls, results: Path, jobs: list[Job]) -> dict[str, JobState]:
        """Where each of ``jobs`` (journaled by this backend) is now, by run id. A backend that
        journals no jobs has nothing to say: its runs are seen through their results only."""
        return {}

    def wait(self, run_ids: set[str]) -> list[RunStatus]:
        """Block until no run in ``run_ids`` is queued or running (seen through the results
        and the journal), logging each as it ends; the sweep's states then."""
        sweep, pending = self.sweep, set(run_ids)
        with sweep.tracker(len(pending)) as tracker:
            while True:
                states = run_states(sweep.plan, sweep.results)
                for status in states:
                    if status.run_id in pending and status.state not in UNDER_WAY:
                        pending.discard(status.run_id)
                        tracker.finished(status)
                watched = [s.state for s in states if s.run_id in pending]
                running, queued = watched.count("running"), watched.count("queued")
                tracker.note(f"{running} running, {queued} queued")
                if not pending:
                    break
                time.sleep(sweep.poll_s)
        self.drain(run_ids)
        drop_placeholder(sweep.results)
        return states

    def drain(self, run_ids: set[str]) -> None:
        """Wait (up to ``DRAIN_S``) for the jobs of runs whose result is already written to
        leave the scheduler: a job goes on for a moment after its run's record (submitit saves
        the return value), and a sweep that returns has no job of its own left holding a node."""
        jobs = [job for run_id, job in latest_jobs(self.sweep.results).items() if run_id in run_ids]
        deadline = time.monotonic() + DRAIN_S
        while jobs:
            live = job_states(self.sweep.results, jobs)
            jobs = [job for job in jobs if live.get(job.run_id, ENDED).phase in UNDER_WAY]
            if jobs and time.monotonic() > deadline:
                ids = ", ".join(job.job_id for job in jobs)
                self.sweep.log(f"jobs {ids} still under way {DRAIN_S:.0f} s after their results")
                return
            if jobs:
                time.sleep(self.sweep.poll_s)


def teachers_first(
    todo: list[RunStatus],
    states: list[RunStatus],
    run: Callable[[list[RunStatus]], list[RunStatus]],
) -> Skipped:
    """``run`` the teachers of ``todo``, then the students whose teacher did not fail (a backend
    without job dependencies); returns the students left out, with why."""
    by_id = {s.run_id: s for s in states}
    for status in run([s for s in todo if s.role == "teacher"]):
        by_id[status.run_id] = status
    students, skipped = [], []
    for student in (s for s in todo if s.role == "student"):
        reason = blocked_by(student, by_id, set())
        (skipped.append((student, reason)) if reason else students.append(student))
    run(students)
    return skipped


class Tracker:
    """A sweep's progress: a rich bar on a terminal, and one line per finished run."""

    def __init__(self, total: int, log: Callable[[str], None], show: bool) -> None:
        self.total, self.log, self.show = total, log, show
        self.bar: Progress | None = None

    def __enter__(self) -> Tracker:
        if self.show:  # on the console that ``say`` prints to, so lines go above the bar
            self.bar = rich_bar(console)
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
