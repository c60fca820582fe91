"""``slurm``: the whole sweep queued at once through submitit, one job per run: one array of
teachers, then per teacher one array of its students that starts only after it succeeded
(``afterok``). A job that reaches its time limit is requeued and resumes from its checkpoint.
Where each job is comes from ``sacct``."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path

import submitit

from kdbench.config import ConfigError
from kdbench.registry import BACKENDS
from kdbench.schema import from_dict, load_yaml
from kdbench.sweep.backends import Backend, Submitted, Sweep
from kdbench.sweep.journal import (
    Job,
    JobState,
    SchedulerError,
    jobs_folder,
    record_jobs,
)
from kdbench.sweep.runner import TrainJob
from kdbench.sweep.status import UNDER_WAY, RunStatus, blocked_by

SLURM_QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "PREEMPTED"}
SLURM_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}
FRESH_S = 300  # a job sacct does not list yet counts as queued for this long after submission


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
    # A run of train.devices = N processes is one job of N tasks over `nodes` nodes
    # (N / nodes tasks per node, each with its GPU when gpus_per_node is set: N / nodes then).
    nodes: int = 1
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
        """Keyword arguments for ``submitit.SlurmExecutor.update_parameters`` (a run of one
        process; ``for_devices`` then sizes a job for N)."""
        own = {"requeues", "python", "sbatch", "nodes"}
        params = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in own}
        params = {key: value for key, value in params.items() if value not in (None, [])}
        # --requeue: a job whose node fails comes back too; a student whose teacher failed is
        # cancelled instead of pending forever
        fixed = {"requeue": True, "kill-on-invalid-dep": "yes"}
        return params | {"additional_parameters": fixed | self.sbatch}

    def for_devices(self, devices: int) -> dict:
        """The job shape of a run of ``devices`` processes: nodes, tasks per node and, with
        GPUs, one per task."""
        if devices % self.nodes:
            raise ConfigError(
                f"train.devices {devices} does not split over the profile's nodes {self.nodes}: "
                "each node runs the same number of the run's processes"
            )
        per_node = devices // self.nodes
        shape = {"nodes": self.nodes, "ntasks_per_node": per_node}
        if self.gpus_per_node:
            shape["gpus_per_node"] = max(self.gpus_per_node, per_node)
        return shape


def load_profile(path: str | Path) -> SlurmProfile:
    """A cluster profile from YAML; an unknown key is an error that names the known ones."""
    path = Path(path)
    if not path.is_file():
        shipped = ", ".join(str(p) for p in sorted(Path("slurm").glob("*.yaml")))
        raise ConfigError(f"cluster profile {str(path)!r} not found (shipped: {shipped or '-'})")
    return from_dict(SlurmProfile, load_yaml(path, empty_ok=True), "profile")


@BACKENDS.register("slurm")
class Slurm(Backend):
    """Every run a Slurm job, queued at once (the cluster profile is ``sweep.profile``); the
    jobs go on without this command."""

    detached = True
    help = "job arrays"

    def __init__(self, sweep: Sweep) -> None:
        super().__init__(sweep)
        if not sweep.profile:
            raise ConfigError(
                "--executor slurm needs --profile slurm/NAME.yaml, e.g. slurm/local.yaml"
            )
        self.profile = load_profile(sweep.profile)

    def submit(self, todo: list[RunStatus], states: list[RunStatus]) -> Submitted:
        """Queue ``todo``: the teachers in one array, then each teacher's students in one array
        after it (``afterok``). Each array is in the journal as soon as it is queued, so no
        failure can queue it twice."""
        sweep, profile = self.sweep, self.profile
        executor = submitit.SlurmExecutor(
            jobs_folder(sweep.results) / "%j", max_num_timeout=profile.requeues,
            python=profile.python,
        )  # fmt: skip
        executor.update_parameters(job_name=f"kdbench-{sweep.name}", **profile.parameters())
        train = TrainJob(sweep.results, sweep.plugins, sweep.rerun)
        for status in todo:  # a run that cannot be shaped fails the sweep before any job
            profile.for_devices(status.cfg.train.devices)
        submit = partial(submit_array, executor, train, sweep.results, profile)
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
        if jobs:
            sweep.log(f"submitted {len(jobs)} jobs to Slurm: {jobs[0].job_id} .. {jobs[-1].job_id}")
        return Submitted(jobs, skipped)

    @classmethod
    def job_states(cls, results: Path, jobs: list[Job]) -> dict[str, JobState]:
        """One ``sacct`` call for all ``jobs``."""
        words = sacct_states([job.job_id for job in jobs])
        return {job.run_id: slurm_state(job, words.get(job.job_id)) for job in jobs}


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
    profile: SlurmProfile,
    runs: list[RunStatus],
    after: str | None,
) -> list[Job]:
    """``runs`` as arrays (one per number of processes a run has, ``train.devices``), to
    start once job ``after`` succeeded; journaled."""
    by_devices: dict[int, list[RunStatus]] = defaultdict(list)
    for status in runs:
        by_devices[status.cfg.train.devices].append(status)
    jobs = []
    for devices, group in sorted(by_devices.items()):
        executor.update_parameters(**profile.for_devices(devices))
        jobs += submit_one_array(executor, train, results, group, after)
    return jobs


def submit_one_array(
    executor: submitit.SlurmExecutor,
    train: TrainJob,
    results: Path,
    runs: list[RunStatus],
    after: str | None,
) -> list[Job]:
    """One ``map_array`` of ``runs``, to start once job ``after`` succeeded; journaled."""
    executor.update_parameters(dependency=f"afterok:{after}" if after else None)
    try:
        submitted = executor.map_array(train, [s.cfg for s in runs])
    except RuntimeError as err:  # sbatch said no (a bad partition, account, ...): submitit's
        # FailedJobError, a RuntimeError whose class is not public
        reasons = [line.removeprefix("sbatch: error: ") for line in str(err).strip().splitlines()]
        raise SchedulerError(f"sbatch refused the jobs: {'; '.join(reasons)}") from err
    jobs = [
        Job(s.run_id, "slurm", j.job_id, time.time()) for s, j in zip(runs, submitted, strict=True)
    ]
    record_jobs(results, jobs)
    return jobs


def sacct_states(job_ids: list[str]) -> dict[str, str]:
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
