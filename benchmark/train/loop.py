"""The one training loop every method runs through: frozen teacher, trained student + method.

``run`` is the entry point: it trains a config to completion (resuming from its last
checkpoint) and writes its record, once per run id.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from kdbench.config import RunConfig
from kdbench.console import say
from kdbench.results import check_writable, checkpoint_dir, read_result, run_path, write_json
from kdbench.train.checkpoint import discard_checkpoints, resume, save_checkpoint, save_weights
from kdbench.train.device import resolve_device, to_device
from kdbench.train.distributed import (
    World,
    barrier,
    broadcast,
    check_world,
    process_group,
    run_device,
    sum_values,
    world_from_env,
)
from kdbench.train.evaluate import evaluate
from kdbench.train.launch import launch
from kdbench.train.lock import RunLock
from kdbench.train.optim import set_lr
from kdbench.train.progress import progress_bar, show_progress
from kdbench.train.record import (
    failed_record,
    finished_record,
    record_unless_done,
    selection_score,
    trusted_result,
)
from kdbench.train.setup import Setup, build, validate
from kdbench.train.step import DivergedError, train_step
from kdbench.train.threads import fit_threads


def run(
    cfg: RunConfig,
    results: Path,
    progress: bool | None = None,
    rerun: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train ``cfg`` to completion (resuming from its last checkpoint) and write its result JSON.

    A finished run whose weights verify is not trained again: its record is returned (unless
    ``rerun``). One process at a time trains a run id; another waits and reuses its result.
    A run that raises is recorded with ``status: failed`` (``interrupted`` for Ctrl-C), never
    over a finished record, then the error propagates. ``train.devices > 1``: called in each of
    the run's processes (torchrun, Slurm tasks), or once, which starts them
    (``kdbench.train.launch``); the main process locks, logs and writes.
    """
    log = log or say
    validate(cfg)
    cfg = cfg.resolved()
    results = Path(results)
    check_writable(results)
    found = world_from_env()
    if cfg.train.devices > 1 and found.size == 1:
        return launch(run, cfg, results, progress, rerun)
    check_world(cfg.train.devices, found)
    fit_threads(found)
    with process_group(found, run_device(found, resolve_device(cfg.device))):
        return run_here(cfg, results, progress, rerun, log if found.main else quiet, found)


def run_here(cfg: RunConfig, results: Path, progress, rerun: bool, log, found: World) -> dict:
    """``run`` in this process, one of ``found``'s."""
    run_id = cfg.run_id()
    folder = checkpoint_dir(results, run_id)
    with RunLock(folder / "run.lock", log=log) if found.main else nullcontext():
        done = broadcast(trusted_result(results, run_id, log) if found.main else None)
        if done and not rerun:
            log(f"run {run_id}: already done (result of {done.get('finished', '?')})")
            return done
        if rerun and found.main:
            discard_checkpoints(folder)
        barrier()
        return train_and_record(cfg, results, progress if found.main else False, log, found)


def train_and_record(cfg: RunConfig, results: Path, progress, log, found: World) -> dict:
    path = run_path(results, cfg.run_id())
    started = time.time()
    try:
        record = train(cfg, results, progress=show_progress(progress), log=log, world=found)
    except KeyboardInterrupt as err:
        if found.main:
            record_unless_done(path, failed_record(cfg, err, started, "interrupted"), log)
        raise
    except Exception as err:
        if found.main:
            record_unless_done(path, failed_record(cfg, err, started), log)
        raise
    if not found.main:
        barrier()  # the main process writes the record
        return read_result(results, cfg.run_id()) or {}
    try:
        write_json(path, record)
    finally:
        barrier()
    return record


def quiet(line: str) -> None:
    """The log of a process other than the run's main one: it says nothing."""


def train(
    cfg: RunConfig, results: Path, progress: bool = False, log=None, world: World | None = None
) -> dict:
    """The training loop proper; returns the finished run's record (not yet written; on a
    process other than the main one, which writes nothing, an empty dict)."""
    started = time.time()
    world = world or World()
    log = log or say
    seed_everything(cfg.seed)
    setup = build(cfg, results, world)
    run_id = cfg.run_id()  # hashing the resolved config: once, not every epoch
    folder = checkpoint_dir(results, run_id)
    state = resume(folder, setup, log)
    spent = state["wall_time_s"]
    saved = time.monotonic()
    for epoch in range(state["epoch"], cfg.train.epochs):
        set_lr(setup.optimizer, cfg.train, epoch)
        setup.method.set_epoch(epoch)
        entry = train_epoch(setup, epoch, cfg.seed, progress)
        entry["val"] = evaluate(setup, "val", epoch)
        if wants_test(cfg.train, state["history"], entry, epoch):
            entry["test"] = evaluate(setup, "test", epoch)
        state["history"].append(entry)
        if not progress:  # logs, Slurm, CI: one line per epoch instead of a bar
            log(epoch_line(run_id, cfg.train.epochs, entry, epoch))
        state["epoch"] = epoch + 1
        state["wall_time_s"] = spent + time.time() - started
        last = epoch + 1 == cfg.train.epochs
        due = last or time.monotonic() - saved >= cfg.train.checkpoint_every_s
        if broadcast(due):  # the main process's clock decides, so all save at the same epoch
            if world.main:
                save_checkpoint(folder, setup, state)
            saved = time.monotonic()
    if not world.main:
        return {}
    save_weights(folder, setup.evaluated)
    if not cfg.train.keep_last:
        discard_checkpoints(folder)
    state["wall_time_s"] = spent + time.time() - started
    return finished_record(cfg, setup, state, results)


def epoch_line(run_id: str, total: int, entry: dict, epoch: int) -> str:
    """``run <id> epoch 3/32: ce 0.512 kd 0.103 | val auc 81.20 acc 74.00 | 12.3 s``: the loss
    terms' means and the validation metrics in percent, as the report prints them."""
    terms = " ".join(f"{k} {v:.4g}" for k, v in entry["train"].items())
    metrics = [k for k in ("auc", "acc") if k in entry["val"]]
    val = " ".join(f"{k} {100 * entry['val'][k]:.2f}" for k in metrics)
    took = entry.get("time_s", 0.0)
    return f"run {run_id} epoch {epoch + 1}/{total}: {terms} | val {val} | {took:.1f} s"


def wants_test(t, history: list[dict], entry: dict, epoch: int) -> bool:
    """Whether to evaluate the test split after ``epoch``: always with ``test_epochs: all``;
    with ``best`` when ``entry``'s validation score ties or beats every earlier one (ties go
    to the later epoch, as in ``best_epoch``) or it is the last epoch."""
    if t.test_epochs == "all" or epoch + 1 == t.epochs:
        return True
    score = selection_score(entry, t.select)
    return all(score >= selection_score(earlier, t.select) for earlier in history)


def train_epoch(setup: Setup, epoch: int, seed: int, progress: bool) -> dict:
    """One pass over the training split; mean of every named loss term (over the global
    batches, when the run's processes share them), timings."""
    setup.student.train()
    setup.method.train()
    loader = setup.loaders["train"]
    loader.batch_sampler.set_epoch(seed, epoch)  # the same batches after a resume
    totals: dict[str, torch.Tensor] = {}
    stats: dict[str, torch.Tensor] = {}
    steps, wait, started = 0, 0.0, time.perf_counter()
    with progress_bar(progress, f"epoch {epoch + 1}", len(loader)) as advance:
        tick = time.perf_counter()
        for batch in loader:
            wait += time.perf_counter() - tick
            share = loader.batch_sampler.share(steps, len(batch["label"]))  # 1 in one process
            try:
                losses = train_step(setup, to_device(batch, setup.device), share)
            except FloatingPointError as err:
                raise DivergedError(
                    f"diverged at epoch {epoch + 1} step {steps + 1}: {err}"
                ) from None
            add_up(totals, losses, share)
            add_up(stats, setup.method.step_stats(), share)
            steps += 1
            advance()
            tick = time.perf_counter()
    lr = setup.optimizer.param_groups[0]["lr"]
    took = time.perf_counter() - started
    entry = {
        "epoch": epoch + 1,
        "lr": lr,
        "train": means(sum_values(totals), steps),
        "steps": steps,
        "time_s": took,
        "data_wait_s": wait,  # time the loop waited for batches (the loader's share)
    }
    stats = sum_values(stats)
    return entry | ({"method_stats": means(stats, steps)} if stats else {})


def add_up(totals: dict[str, torch.Tensor], values: dict[str, torch.Tensor], share: float) -> None:
    """Add ``values`` (this process's) to ``totals``, weighted by its ``share`` of the batch."""
    for name, value in values.items():
        totals[name] = totals.get(name, 0.0) + value.detach().float() * share


def means(totals: dict[str, torch.Tensor], steps: int) -> dict[str, float]:
    return {name: float(total) / max(steps, 1) for name, total in totals.items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
