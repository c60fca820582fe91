"""Which job ran which run: a journal in ``results/jobs``, one JSON line per submission (the
backend that submitted a job tells where it is now)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import submitit

from kdbench.results import warn_once

JOURNAL = "journal.jsonl"


class SchedulerError(RuntimeError):
    """The scheduler could not be asked about jobs (e.g. ``sacct`` without accounting)."""


@dataclass(frozen=True)
class Job:
    """One submission of one run: ``job_id`` is Slurm's (``123`` or ``123_4``) or a local PID."""

    run_id: str
    executor: str  # the backend that submitted it (slurm | local), which knows its state
    job_id: str
    submitted: float  # time.time() at submission
    cancelled: bool = False  # a line added when our own sweep stopped it (Ctrl-C)


@dataclass(frozen=True)
class JobState:
    """Where a job is: ``phase`` is queued, running or ended; ``word`` is the scheduler's own."""

    phase: str
    word: str


def drop_placeholder(results: Path) -> None:
    """Remove the empty ``jobs/%j`` folder submitit leaves behind when it submits (the real
    job folders are ``jobs/<job id>``)."""
    with contextlib.suppress(OSError):  # not there, or not empty: leave it
        (jobs_folder(results) / "%j").rmdir()


def jobs_folder(results: Path) -> Path:
    """Where submitit keeps each job's pickles and logs: ``results/jobs/<job id>/``."""
    return Path(results).resolve() / "jobs"


def job_paths(results: Path, job_id: str):
    """submitit's files of job ``job_id``: ``.stdout``, ``.stderr``, ``.result_pickle``."""
    return submitit.Job(jobs_folder(results) / "%j", job_id).paths


def record_jobs(results: Path, jobs: Iterable[Job]) -> None:
    """Append ``jobs`` to the journal in one write (lines of a few hundred bytes: atomic)."""
    lines = "".join(json.dumps(asdict(job)) + "\n" for job in jobs)
    path = jobs_folder(results) / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(lines)


def latest_jobs(results: Path) -> dict[str, Job]:
    """The last job submitted for each run id."""
    path = jobs_folder(results) / JOURNAL
    if not path.exists():
        return {}
    jobs = [job for line in path.read_text().splitlines() if (job := parse_job(line, path))]
    return {job.run_id: job for job in jobs}


def parse_job(line: str, path: Path) -> Job | None:
    """One journal line as a Job; a damaged line (a write cut short) is skipped with a warning."""
    if not line.strip():
        return None
    try:
        return Job(**json.loads(line))
    except (ValueError, TypeError) as err:
        warn_once(path, f"{path}: a damaged journal line was skipped ({err})")
        return None
