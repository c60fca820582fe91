"""Threads that fit the allocation: one per CPU the process may use (its affinity, capped by
Slurm's SLURM_CPUS_PER_TASK), each local process of a multi-process run on its own CPUs, the
local sweep at most one run per CPU, and what a run used in its record. Each case runs in a
subprocess: pinning this one would slow every later test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kdbench.train.threads import cpu_share, ranges

CPUS = sorted(os.sched_getaffinity(0))


def in_subprocess(code: str, **env) -> dict:
    """Run ``code`` (which prints a JSON line last) with ``env`` set; its output."""
    out = subprocess.run(
        [sys.executable, "-c", code], env=os.environ | env, capture_output=True, text=True,
        check=True, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


FIT = """
import json, os, sys, torch
from kdbench.train.distributed import World
from kdbench.train.threads import fit_threads
world = World(*map(int, sys.argv[1:] or [0, 1, 0, 1]))
n = fit_threads(world)
print(json.dumps({"threads": n, "torch": torch.get_num_threads(),
                  "cpus": sorted(os.sched_getaffinity(0))}))
"""


def fit(world: tuple = (0, 1, 0, 1), **env) -> dict:
    code = FIT.replace("sys.argv[1:]", repr(list(world)))
    return in_subprocess(code, **env)


def test_one_thread_per_allowed_cpu_whatever_the_machine_has():
    out = in_subprocess(f"import os; os.sched_setaffinity(0, {{{CPUS[0]}}})\n" + FIT)
    assert out == {"threads": 1, "torch": 1, "cpus": [CPUS[0]]}  # torch's default: every core


def test_slurm_cpus_per_task_caps_the_threads():
    assert fit(SLURM_CPUS_PER_TASK="1")["threads"] == 1


@pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs")
def test_the_processes_of_one_run_each_take_their_own_cpus():
    first, second = fit((0, 2, 0, 2)), fit((1, 2, 1, 2))
    assert first["cpus"] and second["cpus"] and not set(first["cpus"]) & set(second["cpus"])
    assert first["threads"] == len(first["cpus"]) == len(CPUS) // 2


def test_cpu_shares_are_contiguous_equal_and_never_empty():
    assert cpu_share([0, 1, 2, 3], 1, 2) == [2, 3]
    assert cpu_share([4, 5, 6], 0, 3) == [4]
    assert cpu_share([0, 1], 2, 3) == [0]  # fewer CPUs than slices: one, shared
    assert ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


def test_a_local_sweep_runs_at_most_one_run_per_cpu(tmp_path):
    from kdbench.sweep.backends import Sweep
    from kdbench.sweep.backends.local import LocalPool, Tracker
    from kdbench.sweep.plan import expand
    from kdbench.sweep.spec import load_spec

    lines = []
    sweep = Sweep("s", expand(load_spec(preset="smoke")), tmp_path, parallel=len(CPUS) + 3)
    sweep.log = lines.append
    pool = LocalPool(sweep, Tracker(1, lines.append, False))
    shares = [train.cpus for _, train in pool.slots]
    assert len(shares) == len(CPUS) and sorted(c for share in shares for c in share) == CPUS
    assert f"--parallel {len(CPUS) + 3}: this machine gives {len(CPUS)} CPUs" in lines[0]
