"""Intra-op threads that fit what a run was given: as many as the CPUs it may run on, never
more. torch's default is one thread per core of the machine, whatever the allocation: on a
shared node, or with two trainings side by side, threads then outnumber cores and steps wait
for each other (``tests/benchmarks/side_by_side.py``, README: two unpinned resnet10t runs on 2
cores 1.77-1.83x slower per step than one alone, pinned 1.59-1.65x).

The CPUs a run may use are its process's affinity (``taskset``, Slurm's task binding, the
local sweep's slots), capped by Slurm's ``SLURM_CPUS_PER_TASK``. The processes of one run that
share a machine without Slurm (torchrun, ``train.devices`` started by kdbench) each take their
own slice of them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # plain Python here: a sweep's local slots use these before torch is loaded
    from kdbench.train.distributed import World


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def fit_threads(found: World) -> int:
    """Pin this process to its share of the allowed CPUs and use one thread per CPU of it;
    the number of threads."""
    import torch

    cpus = allowed_cpus()
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if found.local_size > 1 and not slurm:  # Slurm binds each task to its own CPUs already
        cpus = cpu_share(cpus, found.local_rank, found.local_size)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cpus)
    threads = min(len(cpus), int(slurm)) if slurm else len(cpus)
    torch.set_num_threads(max(threads, 1))
    return torch.get_num_threads()


def cpu_share(cpus: list[int], index: int, count: int) -> list[int]:
    """The ``index``-th of ``count`` contiguous, equal slices of ``cpus`` (one CPU, shared,
    when there are fewer CPUs than slices)."""
    size = len(cpus) // count
    if size == 0:
        return [cpus[index % len(cpus)]]
    return cpus[index * size : (index + 1) * size]


def threads_record() -> dict:
    """What the run computed with, for its record."""
    import torch

    return {
        "threads": torch.get_num_threads(),
        "cpus": ranges(allowed_cpus()),
        "slurm_cpus_per_task": os.environ.get("SLURM_CPUS_PER_TASK"),
    }


def ranges(cpus: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"`` (as ``taskset -c`` writes a CPU list)."""
    parts, start = [], None
    for k, cpu in enumerate(cpus):
        if start is None:
            start = cpu
        if k + 1 == len(cpus) or cpus[k + 1] != cpu + 1:
            parts.append(f"{start}-{cpu}" if cpu != start else f"{start}")
            start = None
    return ",".join(parts)
