"""A run of ``train.devices`` processes started from one: what ``torchrun --nproc-per-node N``
does, for ``kdbench run``, ``kdbench demo`` and local sweeps, without a second command.

The processes are spawned (a fresh interpreter each: forking a process that has used torch's
thread pools can hang), import the plugins this process loaded, meet on a free local port and
run ``kdbench.train.run`` as torchrun's workers would. The main one writes the record, which
is returned here. A process that fails stops the others.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import torch.multiprocessing as mp

from kdbench.config import RunConfig
from kdbench.registry import loaded_plugins
from kdbench.results import read_result


def launch(
    run: Callable[..., dict], cfg: RunConfig, results: Path, progress: bool | None, rerun: bool
) -> dict:
    """``run`` (``kdbench.train.run``) ``cfg`` on ``cfg.train.devices`` local processes; the
    main process's record."""
    n = cfg.train.devices
    port = free_port()
    args = (run, n, port, cfg, str(results), progress, rerun, loaded_plugins())
    try:
        mp.start_processes(worker, args=args, nprocs=n, join=True, start_method="spawn")
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
        record = read_result(results, cfg.run_id()) or {}
        if record.get("status") in ("failed", "interrupted"):  # the main process wrote why
            raise LaunchedRunError(record.get("error", "failed")) from None
        raise LaunchedRunError(f"process {err.error_index} of {n} failed: {err}") from None
    return read_result(results, cfg.run_id()) or {}


class LaunchedRunError(RuntimeError):
    """A run of several processes failed; the message is its record's error."""


def worker(
    rank: int,
    run: Callable[..., dict],
    n: int,
    port: int,
    cfg: RunConfig,
    results: str,
    progress: bool | None,
    rerun: bool,
    plugins: list[str],
) -> None:
    """One of the run's processes (``rank`` of ``n``), as torchrun would start it."""
    from kdbench.registry import load_plugin

    die_with_parent()
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(n),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(n),
    )
    for module in plugins:
        load_plugin(module)
    run(cfg, Path(results), progress=progress, rerun=rerun)


def die_with_parent() -> None:
    """Ask Linux to end this process when the one that started it dies (killed, say): no
    orphan keeps training, or holds the run's port."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the processes end when their collectives fail
        pass


PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port free on this machine now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
