"""Which submitit job ran which run (a journal in ``results/jobs``), and where that job is now."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import submitit

from kdbench.results import warn_once

JOURNAL = "journal.jsonl"
SLURM_QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "PREEMPTED"}
SLURM_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}
FRESH_S = 300  # a job sacct does not list yet counts as queued for this long after submission


class SchedulerError(RuntimeError):
    """The scheduler could not be asked about jobs (e.g. ``sacct`` without accounting)."""


@dataclass(frozen=True)
class Job:
    """One submission of one run: ``job_id`` is Slurm's (``123`` or ``123_4``) or a local PID."""

    run_id: str
    executor: str  # slurm | local
    job_id: str
    submitted: float  # time.time() at submission
    cancelled: bool = False  # a line added when our own sweep stopped it (Ctrl-C)


@dataclass(frozen=True)
class JobState:
    """Where a job is: ``phase`` is queued, running or ended; ``word`` is the scheduler's own."""

    phase: str
    word: str


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


def job_states(results: Path, jobs: Iterable[Job]) -> dict[str, JobState]:
    """The state of each job, by run id: one ``sacct`` call for all Slurm jobs."""
    jobs = list(jobs)
    slurm = slurm_states([j.job_id for j in jobs if j.executor == "slurm"])
    states = {}
    for job in jobs:
        if job.executor == "slurm":
            states[job.run_id] = slurm_state(job, slurm.get(job.job_id))
        else:
            states[job.run_id] = local_state(results, job)
    return states


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """sacct's state word for each job id (array tasks expanded); {} when there are none."""
    if not job_ids:
        return {}
    if shutil.which("sacct") is None:
        raise SchedulerError("sacct not found: job states of Slurm runs need the Slurm clients")
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids}, key=int)
    command = ["sacct", "--parsable2", "--format=JobID,State", f"--jobs={','.join(arrays)}"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    except subprocess.CalledProcessError as err:
        raise SchedulerError(
            f"sacct failed ({err.stderr.strip()}): job states need Slurm accounting (slurmdbd)"
        ) from err
    except subprocess.TimeoutExpired as err:
        raise SchedulerError("sacct did not answer within 60 s") from err
    return parse_sacct(out.stdout)


def parse_sacct(text: str) -> dict[str, str]:
    """``JobID|State`` lines (a header first) as {job id: state word}: job steps (``7.batch``)
    skipped, pending array tasks (``9_[1-3,5%2]``) expanded to ``9_1`` .. ``9_5``."""
    states = {}
    for line in text.splitlines()[1:]:
        job_id, _, state = line.strip().partition("|")
        if not job_id or "." in job_id or not state:
            continue
        for task in array_tasks(job_id):
            states[task] = state.split()[0]
    return states


def array_tasks(job_id: str) -> list[str]:
    """``9_[1-3,5%2]`` -> ``9_1, 9_2, 9_3, 9_5``; any other id as it is."""
    match = re.fullmatch(r"(\d+)_\[([\d,-]+)(%\d+)?\]", job_id)
    if match is None:
        return [job_id]
    array, tasks = match.group(1), []
    for part in match.group(2).split(","):
        first, _, last = part.partition("-")
        tasks += [f"{array}_{k}" for k in range(int(first), int(last or first) + 1)]
    return tasks


def slurm_state(job: Job, word: str | None) -> JobState:
    if word is None:  # accounting has not heard of it yet, or it is from another cluster's life
        fresh = time.time() - job.submitted < FRESH_S
        return JobState("queued", "SUBMITTED") if fresh else JobState("ended", "UNKNOWN")
    if word in SLURM_QUEUED:
        return JobState("queued", word)
    if word in SLURM_RUNNING:
        return JobState("running", word)
    return JobState("ended", word)


def local_state(results: Path, job: Job) -> JobState:
    """A local job runs while its submitit controller process (``job_id`` is its PID) lives."""
    if job_paths(results, job.job_id).result_pickle.exists():
        return JobState("ended", "FINISHED")
    try:
        command = Path(f"/proc/{job.job_id}/cmdline").read_bytes()
    except OSError:
        command = b""
    if b"submitit" in command:  # a reused PID runs something else
        return JobState("running", "RUNNING")
    return JobState("ended", "INTERRUPTED")
