"""Where a sweep hands a run to the harness: in this process (``run_in_process``), or as the
callable of a submitit job (``TrainJob``, on a Slurm node or in a local subprocess)."""

from __future__ import annotations

import os
import pdb
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from submitit.helpers import Checkpointable, DelayedSubmission, TorchDistributedEnvironment

from kdbench.config import RunConfig
from kdbench.registry import load_plugin
from kdbench.sweep.plan import describe


def run_in_process(
    runs: list[RunConfig],
    results: Path,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
    rerun: bool = False,
    debug: bool = False,
) -> list[dict]:
    """Train ``runs`` in this process, in order, and return their records; a failure is
    recorded (by the harness in the run's JSON, and here as a ``failed`` record), not fatal.
    ``debug``: a failure opens pdb at the error first (on a terminal)."""
    from kdbench.train import run  # a run imports torch; planning need not

    records = []
    for i, cfg in enumerate(runs, 1):
        log(f"[{i}/{len(runs)}] {describe(cfg)}  ({cfg.run_id()})")
        try:
            records.append(run(cfg, results, progress=progress, rerun=rerun))
        except Exception as err:  # recorded in the run's JSON by the harness
            if debug and sys.stdin.isatty():
                pdb.post_mortem(err.__traceback__)
            error = f"{type(err).__name__}: {err}"
            log(f"    failed: {error}")
            records.append({"run_id": cfg.run_id(), "status": "failed", "error": error})
    return records


class TrainJob(Checkpointable):
    """The callable of every job: trains one run into ``results`` and writes its result JSON.

    On preemption or time-out submitit calls ``checkpoint``, which resubmits the same call; the
    harness then resumes from the run's last epoch checkpoint (so at most one epoch is lost).
    ``rerun`` trains a finished run again, once: a requeued job resumes, it does not restart.
    """

    def __init__(
        self,
        results: Path,
        plugins: list[str] = (),
        rerun: bool = False,
        cpus: list[int] | None = None,
    ) -> None:
        """``cpus``: the CPUs the job's process is pinned to (a local sweep's slot)."""
        self.results = str(Path(results).resolve())
        self.plugins = list(plugins)
        self.rerun = rerun
        self.cpus = cpus
        self.requeues = 0

    def __call__(self, cfg: RunConfig) -> dict:
        from kdbench.train import run  # torch is imported on the node, not by the submitter

        for module in self.plugins:
            load_plugin(module)
        if self.cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, self.cpus)  # the harness then uses one thread per CPU
        export_slurm_world()
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


def export_slurm_world() -> None:
    """In a Slurm job of several tasks (a run with ``train.devices > 1``), the variables
    torch.distributed's env:// rendezvous reads (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...),
    as submitit's public helper sets them; nothing in a job of one task."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        world = TorchDistributedEnvironment()
        if int(os.environ.get("SLURM_NNODES", "1")) == 1:  # all tasks here: no name to resolve
            world.master_addr = "127.0.0.1"
        world.export(set_cuda_visible_devices=False, overwrite=True)
