"""``local``: every run a submitit subprocess on this machine (requeued on USR2 as on Slurm),
teachers first, one run per slot at a time; on a GPU machine one slot per GPU, and each run
sees only its own."""

from __future__ import annotations

import time
from pathlib import Path

import submitit

from kdbench.registry import BACKENDS
from kdbench.results import read_result
from kdbench.sweep.backends import Backend, Submitted, Sweep, Tracker, teachers_first
from kdbench.sweep.journal import (
    Job,
    JobState,
    drop_placeholder,
    job_paths,
    jobs_folder,
    record_jobs,
)
from kdbench.sweep.runner import TrainJob
from kdbench.sweep.status import RunStatus, classify
from kdbench.train.threads import allowed_cpus, cpu_share

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default is 2 min; a local run has no limit


@BACKENDS.register("local")
class Local(Backend):
    """Runs ``todo`` in subprocesses here and returns when they ended; Ctrl-C stops them, and
    the next sweep run resumes them."""

    help = "subprocesses here"

    def submit(self, todo: list[RunStatus], states: list[RunStatus]) -> Submitted:
        with self.sweep.tracker(len(todo)) as tracker:
            pool = LocalPool(self.sweep, tracker)
            return Submitted(skipped=teachers_first(todo, states, pool.run))

    @classmethod
    def job_states(cls, results: Path, jobs: list[Job]) -> dict[str, JobState]:
        return {job.run_id: local_state(results, job) for job in jobs}


class LocalPool:
    """Slots that each run one submitit subprocess at a time, every run journaled."""

    def __init__(self, sweep: Sweep, tracker: Tracker) -> None:
        import torch

        self.results, self.tracker = sweep.results, tracker
        gpus = torch.cuda.device_count()
        count = sweep.parallel or gpus or 1
        if not gpus:
            count = cpu_slots(count, sweep.log)
        self.slots = [
            (self.executor(k % gpus if gpus else None), self.job(sweep, k, count, gpus))
            for k in range(count)
        ]

    @staticmethod
    def job(sweep: Sweep, slot: int, count: int, gpus: int) -> TrainJob:
        """The slot's callable; on CPU pinned to the slot's own share of the CPUs, so runs side
        by side never fight over cores."""
        cpus = None if gpus else cpu_share(allowed_cpus(), slot, count)
        return TrainJob(sweep.results, sweep.plugins, sweep.rerun, cpus)

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
                for slot, (executor, train) in enumerate(self.slots):
                    if slot not in running and pending:
                        running[slot] = self.start(executor, train, pending.pop(0))
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

    def start(self, executor: submitit.LocalExecutor, train: TrainJob, status: RunStatus) -> tuple:
        job = executor.submit(train, status.cfg)
        record_jobs(self.results, [Job(status.run_id, "local", job.job_id, time.time())])
        return status, job

    def outcome(self, status: RunStatus, job: submitit.LocalJob) -> RunStatus:
        drop_placeholder(self.results)  # the job's process made it
        record = read_result(self.results, status.run_id)
        journal = Job(status.run_id, "local", job.job_id, time.time())
        return classify(status, record, journal, JobState("ended", job.state), self.results)


def cpu_slots(parallel: int, log) -> int:
    """Runs at once on a machine without GPUs: at most one per CPU this process may use."""
    cpus = len(allowed_cpus())
    if parallel > cpus:
        log(f"--parallel {parallel}: this machine gives {cpus} CPUs, so {cpus} runs at a time")
        return cpus
    return parallel


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
