"""The one training loop every method runs through: frozen teacher, trained student + method."""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import sys
import time
import traceback
import typing
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdbench import __version__, store
from kdbench.config import ConfigError, DataConfig, RunConfig, coerce
from kdbench.cost import FLOP_CONVENTION, Cost, count_params, measure_cost
from kdbench.dataset import check_dataset
from kdbench.ema import WeightAverage
from kdbench.identity import code_version
from kdbench.method import Context, Method, build_method, check_params
from kdbench.metrics import classification_metrics
from kdbench.models import build_model, model_names
from kdbench.output import Output
from kdbench.precision import autocast, batch_shape, check_precision, choose_dtype, dtype_name
from kdbench.registry import DATASETS, METHODS, MODELS, UnknownNameError, unknown_message
from kdbench.results import (
    cache_root,
    check_writable,
    checkpoint_dir,
    git_sha,
    package_versions,
    read_result,
    run_path,
    set_aside,
    write_json,
)
from kdbench.runlock import RunLock
from kdbench.subset import limit
from kdbench.teacher import (
    CachedTeacher,
    CacheUnusable,
    CacheWarning,
    LiveTeacher,
    TeacherCache,
    ViewSampler,
    cacheable,
)

SPLITS = ("train", "val", "test")
LR_SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("adamw", "sgd")
TEST_EPOCHS = ("all", "best")


@dataclass
class Setup:
    """Everything a run trains and evaluates with, built from its config."""

    loaders: dict[str, DataLoader]
    student: nn.Module
    teacher: nn.Module | None
    teacher_outputs: LiveTeacher | CachedTeacher | None  # what a step's teacher side calls
    method: Method
    optimizer: torch.optim.Optimizer
    device: torch.device
    notes: dict  # how the teacher side ran (precision, cache), for the run's record
    dtype: torch.dtype = torch.float32  # the student's autocast dtype (``train.precision``)
    verdict: dict | None = None  # how ``train.precision: auto`` chose ``dtype`` (measured)
    average: WeightAverage | None = None  # ``train.ema``: the weights evaluated and saved

    @property
    def evaluated(self) -> nn.Module:
        """The model a run evaluates and saves: the weight average when there is one."""
        return self.average.model if self.average else self.student


def validate(cfg: RunConfig) -> None:
    """Cheap checks of names and parameters, before anything is built or written."""
    method_cls = METHODS.get(cfg.method.name)
    check_params(f"method {cfg.method.name!r}", method_cls, cfg.method.params)
    for data in filter(None, (cfg.data, cfg.data.test)):
        check_params(f"dataset {data.name!r}", DATASETS.get(data.name), data.params)
    known = set(model_names())
    for role, model in [("student", cfg.student), ("teacher", cfg.teacher)]:
        if model is None:
            continue
        if model.name not in known:
            raise UnknownNameError(unknown_message("model", model.name, known))
        if model.name in MODELS:  # a kdbench model: its keyword arguments are known
            check_params(f"{role}.kwargs of {model.name!r}", MODELS.get(model.name), model.kwargs)
            check_types(f"{role}.kwargs", MODELS.get(model.name), model.kwargs)
    if method_cls.needs_teacher and cfg.teacher is None:
        raise ConfigError(
            f"method {cfg.method.name!r} distils from a teacher: set teacher.name and "
            "teacher.run (a teacher run id) or teacher.checkpoint"
        )
    check_precision(cfg.train.precision, "train.precision")
    if cfg.teacher:
        check_precision(cfg.teacher.precision, "teacher.precision")
    if not 0.0 < cfg.data.train_fraction <= 1.0:
        raise ConfigError(
            f"data.train_fraction: expected a fraction in (0, 1], got {cfg.data.train_fraction}"
        )
    if cfg.train.optimizer not in OPTIMIZERS:
        raise ConfigError(unknown_message("optimizer", cfg.train.optimizer, OPTIMIZERS))
    if cfg.train.epochs < 1:
        raise ConfigError(f"train.epochs: expected at least 1, got {cfg.train.epochs}")
    if not cfg.train.lr > 0:
        raise ConfigError(f"train.lr: expected a learning rate > 0, got {cfg.train.lr}")
    if not 0.0 <= cfg.train.ema < 1.0:
        raise ConfigError(f"train.ema: expected a decay in [0, 1) (0: off), got {cfg.train.ema}")
    if cfg.train.test_epochs not in TEST_EPOCHS:
        raise ConfigError(unknown_message("train.test_epochs", cfg.train.test_epochs, TEST_EPOCHS))
    if cfg.train.schedule not in LR_SCHEDULES:
        raise ConfigError(unknown_message("schedule", cfg.train.schedule, LR_SCHEDULES))


def check_types(owner: str, fn, values: dict) -> None:
    """Each value of ``values`` fits the annotation of ``fn``'s keyword of that name, as a
    config field would (``config.coerce``; the values themselves are left as given)."""
    try:
        hints = typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    except (NameError, TypeError):  # an annotation that cannot be resolved: nothing to check
        return
    for key, value in values.items():
        if key in hints:
            coerce(hints[key], value, f"{owner}.{key}")


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
    over a finished record, then the error propagates.
    """
    log = log or say
    validate(cfg)
    cfg = cfg.resolved()
    results = Path(results)
    check_writable(results)
    run_id = cfg.run_id()
    folder = checkpoint_dir(results, run_id)
    with RunLock(folder / "run.lock", log=log):
        done = trusted_result(results, run_id, log)
        if done and not rerun:
            log(f"run {run_id}: already done (result of {done.get('finished', '?')})")
            return done
        if rerun:
            discard_checkpoints(folder)
        return train_and_record(cfg, results, progress, log)


def train_and_record(cfg: RunConfig, results: Path, progress: bool | None, log) -> dict:
    path = run_path(results, cfg.run_id())
    started = time.time()
    try:
        record = train(cfg, results, progress=show_progress(progress), log=log)
    except KeyboardInterrupt as err:
        record_unless_done(path, failed_record(cfg, err, started, "interrupted"), log)
        raise
    except Exception as err:
        record_unless_done(path, failed_record(cfg, err, started), log)
        raise
    write_json(path, record)
    return record


def trusted_result(results: Path, run_id: str, log, need_weights: bool = False) -> dict | None:
    """The run's finished record unless its weights are damaged (or, with ``need_weights``, as
    for a teacher, missing): then the record is set aside and the run must be trained again.
    A record without its weights is still a result (e.g. a results folder copied without
    ``checkpoints/``)."""
    record = read_result(results, run_id)
    if record is None and run_path(results, run_id).exists():  # damaged: keep it, out of the way
        aside = set_aside(run_path(results, run_id))
        log(f"run {run_id}: its record is damaged; set aside as {aside.name}, training it again")
    if not record or record.get("status") != "done":
        return None
    weights = results / record["checkpoint"] if record.get("checkpoint") else None
    if weights is None or not weights.exists():
        missing = f"its weights {weights or '(none recorded)'} are missing"
        problem = missing if need_weights else None
    else:
        problem = store.verify(weights)
    if problem is None:
        return record
    aside = set_aside(run_path(results, run_id))
    log(f"run {run_id}: {problem}; its record set aside as {aside.name}, training it again")
    return None


def record_unless_done(path: Path, record: dict, log) -> None:
    """Write a failure record to ``path``, unless a finished record is there (a ``--rerun``
    that failed) or the disk refuses it (the error is raised either way)."""
    current = read_result(path.parent.parent, path.stem)  # results/runs/<run id>.json
    if current and current.get("status") == "done":
        return
    try:
        write_json(path, record)
    except OSError as err:
        log(f"cannot record the failure in {path}: {err}")


def train(cfg: RunConfig, results: Path, progress: bool = False, log=None) -> dict:
    """The training loop proper; returns the finished run's record (not yet written)."""
    started = time.time()
    seed_everything(cfg.seed)
    setup = build(cfg, results)
    folder = checkpoint_dir(results, cfg.run_id())
    state = resume(folder, setup, log or say)
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
        state["epoch"] = epoch + 1
        state["wall_time_s"] = spent + time.time() - started
        last = epoch + 1 == cfg.train.epochs
        if last or time.monotonic() - saved >= cfg.train.checkpoint_every_s:
            save_checkpoint(folder, setup, state)
            saved = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    store.save(setup.evaluated.state_dict(), folder / "model.pt")
    if not cfg.train.keep_last:
        discard_checkpoints(folder)
    state["wall_time_s"] = spent + time.time() - started
    return finished_record(cfg, setup, state, results)


def wants_test(t, history: list[dict], entry: dict, epoch: int) -> bool:
    """Whether to evaluate the test split after ``epoch``: always with ``test_epochs: all``;
    with ``best`` when ``entry``'s validation score ties or beats every earlier one (ties go
    to the later epoch, as in ``best_epoch``) or it is the last epoch."""
    if t.test_epochs == "all" or epoch + 1 == t.epochs:
        return True
    score = selection_score(entry, t.select)
    return all(score >= selection_score(earlier, t.select) for earlier in history)


def build(cfg: RunConfig, results: Path) -> Setup:
    device = resolve_device(cfg.device)
    datasets = build_datasets(cfg.data)
    loaders = {s: make_loader(d, cfg, s, device) for s, d in datasets.items()}
    num_classes = datasets["train"].num_classes
    student = build_model(
        cfg.student.name, num_classes, cfg.student.checkpoint, **cfg.student.kwargs
    )
    student = place(student, device)
    teacher, weights = None, None
    if METHODS.get(cfg.method.name).needs_teacher:
        teacher, weights = load_teacher(cfg, num_classes, results, device)
    ctx = dry_run(student, teacher, datasets["train"], num_classes, device)
    method = build_method(cfg.method.name, ctx, cfg.method.params).to(device)
    params = list(student.parameters()) + list(method.parameters())
    outputs, notes = teacher_side(cfg, teacher, weights, method, datasets["train"], device)
    optimizer = make_optimizer(params, cfg)
    shape = batch_shape(datasets["train"], cfg.data.batch_size)
    dtype, verdict = choose_dtype(
        cfg.train.precision, "train.precision", student, cfg.student, shape, device, True
    )
    average = WeightAverage(student, cfg.train.ema) if cfg.train.ema else None
    return Setup(
        loaders,
        student,
        teacher,
        outputs,
        method,
        optimizer,
        device,
        notes,
        dtype,
        verdict,
        average,
    )


def teacher_side(cfg: RunConfig, teacher, weights, method: Method, train_set, device):
    """How each step gets the teacher's outputs: stored ones when the config allows and the
    dataset has fixed views, else (or when the cache cannot be used, with a warning) a live pass;
    plus notes on which, for the run's record."""
    if teacher is None:
        return None, {}
    shape = batch_shape(train_set, cfg.data.batch_size)
    dtype, verdict = choose_dtype(
        cfg.teacher.precision, "teacher.precision", teacher, cfg.teacher, shape, device, False
    )
    live = LiveTeacher(teacher, method.teacher_features(), device, dtype)
    notes = {"precision": dtype_name(dtype), "features": live.features}
    notes |= {"precision_verdict": verdict} if verdict else {}
    reason = "teacher.cache is false" if not cfg.teacher.cache else cacheable(train_set)
    if reason:
        return live, notes | {"cache": False, "cache_reason": reason}
    started = time.perf_counter()
    cache = TeacherCache(cache_root(), weights, train_set, dtype, device)
    try:
        table = cache.table(live, cfg.data.eval_batch_size)
    except CacheUnusable as err:
        warnings.warn(str(err), CacheWarning, stacklevel=2)
        return live, notes | {"cache": False, "cache_reason": str(err)}
    took = time.perf_counter() - started
    cached = CachedTeacher(table, train_set.num_views, device)
    return cached, notes | {"cache": True, "cache_dir": str(cache.folder), "cache_load_s": took}


def build_datasets(data: DataConfig) -> dict[str, Dataset]:
    """train and val from ``data``; test from ``data.test`` when set (cross-dataset)."""
    sources = {s: data.test if s == "test" and data.test else data for s in SPLITS}
    sets = {s: DATASETS.get(src.name)(split=s, **src.params) for s, src in sources.items()}
    sets["train"] = limit(sets["train"], data.train_fraction)
    for split, dataset in sets.items():
        check_dataset(dataset, f"dataset {sources[split].name!r} ({split})")
    if sets["test"].num_classes != sets["train"].num_classes:
        raise ConfigError(
            f"data.test {data.test.name!r} has {sets['test'].num_classes} classes, "
            f"{data.name!r} {sets['train'].num_classes}"
        )
    return sets


def load_teacher(cfg: RunConfig, num_classes: int, results: Path, device) -> tuple:
    """The frozen teacher and its weights file, from a finished teacher run in ``results`` or
    a checkpoint file."""
    t = cfg.teacher
    checkpoint = t.checkpoint
    if t.run:
        record = trusted_result(results, t.run, say, need_weights=True)
        if not record:
            raise ConfigError(
                f"teacher.run={t.run!r}: no finished run with intact weights with that id in "
                f"{results / 'runs'}"
            )
        trained = record["config"]["student"]
        if (trained["name"], trained["kwargs"]) != (t.name, t.kwargs):
            raise ConfigError(
                f"teacher.run={t.run!r} trained {trained['name']} {trained['kwargs']}, "
                f"but teacher is {t.name} {t.kwargs}"
            )
        checkpoint = str(results / record["checkpoint"])
    if not checkpoint:
        raise ConfigError("the teacher needs weights: set teacher.run or teacher.checkpoint")
    problem = store.verify(Path(checkpoint)) if store.read_digest(Path(checkpoint)) else None
    if problem:  # a checkpoint kdbench wrote, given by path: its checksum is checked too
        raise ConfigError(f"teacher.checkpoint: {problem}")
    try:
        teacher = build_model(t.name, num_classes, checkpoint, **t.kwargs)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(
            f"teacher weights {checkpoint}: cannot be read ({type(err).__name__}: {first})"
        ) from None
    teacher.eval().requires_grad_(False)
    return place(teacher, device), Path(checkpoint)


def dry_run(student, teacher, train_set: Dataset, num_classes: int, device) -> Context:
    """One forward of a 2-sample batch, so methods can size projectors from real shapes."""
    images = torch.stack([train_set[i]["image"] for i in range(2)]).to(device)
    with torch.no_grad():
        was = student.training
        s_out = student.eval()(images)
        student.train(was)
        t_out = teacher(images) if teacher is not None else None
    return Context(s_out, t_out, num_classes, len(train_set), dataset_labels(train_set))


def dataset_labels(dataset: Dataset) -> torch.Tensor | None:
    """The label of every sample, from the dataset's ``labels`` array; ``None`` without one."""
    labels = getattr(dataset, "labels", None)
    return None if labels is None else torch.tensor(np.asarray(labels), dtype=torch.int64)


def train_epoch(setup: Setup, epoch: int, seed: int, progress: bool) -> dict:
    """One pass over the training split; mean of every named loss term, timings."""
    setup.student.train()
    setup.method.train()
    loader = setup.loaders["train"]
    loader.sampler.set_epoch(seed, epoch)  # the same batches after a resume
    totals: dict[str, torch.Tensor] = {}
    stats: dict[str, torch.Tensor] = {}
    steps, wait, started = 0, 0.0, time.perf_counter()
    with progress_bar(progress, f"epoch {epoch + 1}", len(loader)) as advance:
        tick = time.perf_counter()
        for batch in loader:
            wait += time.perf_counter() - tick
            try:
                losses = train_step(setup, to_device(batch, setup.device))
            except FloatingPointError as err:
                raise DivergedError(
                    f"diverged at epoch {epoch + 1} step {steps + 1}: {err}"
                ) from None
            add_up(totals, losses)
            add_up(stats, setup.method.step_stats())
            steps += 1
            advance()
            tick = time.perf_counter()
    lr = setup.optimizer.param_groups[0]["lr"]
    took = time.perf_counter() - started
    entry = {
        "epoch": epoch + 1,
        "lr": lr,
        "train": means(totals, steps),
        "steps": steps,
        "time_s": took,
        "data_wait_s": wait,  # time the loop waited for batches (the loader's share)
    }
    return entry | ({"method_stats": means(stats, steps)} if stats else {})


def add_up(totals: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> None:
    for name, value in values.items():
        totals[name] = totals.get(name, 0.0) + value.detach().float()


def means(totals: dict[str, torch.Tensor], steps: int) -> dict[str, float]:
    return {name: float(total) / max(steps, 1) for name, total in totals.items()}


def train_step(setup: Setup, batch: dict) -> dict[str, torch.Tensor]:
    t_out = setup.teacher_outputs(batch) if setup.teacher_outputs else None
    with autocast(setup.device, setup.dtype):
        s_out = setup.student(batch["image"])
        s_out = Output(s_out.logits.float(), s_out.features)  # losses in fp32 under bf16
        losses = setup.method.losses(batch, s_out, t_out)
    check_finite(losses, s_out.logits)
    setup.optimizer.zero_grad(set_to_none=True)
    setup.method.backward(losses, s_out)
    setup.optimizer.step()
    if setup.average:
        setup.average.update()
    return losses


def check_finite(losses: dict[str, torch.Tensor], logits: torch.Tensor) -> None:
    """Raise ``FloatingPointError`` naming the first loss term (or the logits) not finite."""
    for name, value in losses.items():
        if not torch.isfinite(value):
            raise FloatingPointError(f"loss term {name!r} is {float(value)}")
    if not torch.isfinite(logits).all():
        raise FloatingPointError("the student's logits are not finite")


class DivergedError(FloatingPointError):
    """Training produced a non-finite loss or output; the message says at which epoch/step."""


@torch.no_grad()
def evaluate(setup: Setup, split: str, epoch: int = 0) -> dict[str, float]:
    """Metrics of the student on ``split`` (frame- and video-level for binary tasks, and per
    kind of fake where the dataset names them in ``kinds``)."""
    model = setup.evaluated.eval()
    kinds = getattr(setup.loaders[split].dataset, "kinds", None)
    probs, labels, videos, index = [], [], [], []
    for batch in setup.loaders[split]:
        with autocast(setup.device, setup.dtype):
            logits = model(to_device(batch, setup.device)["image"]).logits
        if not torch.isfinite(logits).all():
            raise DivergedError(
                f"diverged at epoch {epoch + 1}: the student's outputs on {split} are not finite"
            )
        probs.append(logits.float().softmax(1).cpu())
        labels.append(batch["label"])
        videos.extend(batch.get("video", ()))  # optional: video-level metrics need it
        index.extend(batch["index"].tolist() if kinds is not None else [])
    return classification_metrics(
        torch.cat(probs).numpy(),
        torch.cat(labels).numpy(),
        videos or None,
        [kinds[i] for i in index] if kinds is not None else None,
    )


def make_loader(dataset: Dataset, cfg: RunConfig, split: str, device) -> DataLoader:
    train = split == "train"
    workers = cfg.data.workers if cfg.data.workers is not None else default_workers(device)
    return DataLoader(
        dataset,
        batch_size=cfg.data.batch_size if train else cfg.data.eval_batch_size,
        sampler=ViewSampler(len(dataset), getattr(dataset, "num_views", None)) if train else None,
        drop_last=train and len(dataset) > cfg.data.batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
    )


def default_workers(device: torch.device) -> int:
    """Loader processes: none on CPU, where they would take cores from the model (datasets
    keep decoded images in memory); on CUDA enough to keep the GPU fed, one core spared."""
    return min(8, (os.cpu_count() or 1) - 1) if device.type == "cuda" else 0


def make_optimizer(params: list[nn.Parameter], cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True
        )
    # fused: one kernel for all parameters (on CPU 3-4x faster than the default for-loop)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)


def lr_factor(t, epoch: int) -> float:
    """Learning-rate multiplier at ``epoch`` (0-based) for the configured schedule."""
    if t.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / max(t.epochs, 1)))
    if t.schedule == "step":
        return t.gamma ** sum(epoch >= m for m in t.milestones)
    return 1.0


def set_lr(optimizer: torch.optim.Optimizer, t, epoch: int) -> None:
    for group in optimizer.param_groups:
        group["lr"] = t.lr * lr_factor(t, epoch)


def save_checkpoint(folder: Path, setup: Setup, state: dict) -> None:
    """Everything needed to continue after ``state['epoch']`` epochs, as ``last.pt`` (written
    atomically, checksummed); the one before it is kept as ``prev.pt``."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = {
        "model": setup.student.state_dict(),
        "method": setup.method.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "rng": torch.get_rng_state(),
    } | {key: state[key] for key in RESUMED}
    if setup.average:
        blob["average"] = setup.average.state_dict()
    last = folder / "last.pt"
    if last.exists():
        store.rename(last, folder / "prev.pt")
    store.save(blob, last)


RESUMED = ("epoch", "history", "wall_time_s", "attempts")  # what a checkpoint carries on
CHECKPOINTS = ("last.pt", "prev.pt")  # newest first


def resume(folder: Path, setup: Setup, log) -> dict:
    """Load the newest intact checkpoint into ``setup``; the state to continue from.

    A damaged checkpoint is set aside and the one before it tried, then a fresh start; each
    fault is listed in the state's ``checkpoint_faults`` (and so in the run's record).
    """
    faults = []
    for name in CHECKPOINTS:
        path = folder / name
        if not path.exists():
            continue
        try:
            blob = store.load(path, map_location=setup.device)
            restore(setup, blob)
        except store.DamagedFileError as err:
            faults.append(str(err))
            log(f"{err}; trying the checkpoint before it")
            continue
        log(f"resuming after epoch {blob['epoch']} from {path}")
        state = {key: blob.get(key, 0) for key in RESUMED}
        state["attempts"] = state["attempts"] + 1
        return state | {"resumed_from_epoch": blob["epoch"], "checkpoint_faults": faults}
    fresh = {"epoch": 0, "history": [], "wall_time_s": 0.0, "attempts": 1}
    return fresh | {"resumed_from_epoch": 0, "checkpoint_faults": faults}


def restore(setup: Setup, blob: dict) -> None:
    setup.student.load_state_dict(blob["model"])
    setup.method.load_state_dict(blob["method"])
    setup.optimizer.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["rng"].cpu())
    if setup.average:
        setup.average.load_state_dict(blob["average"])


def discard_checkpoints(folder: Path) -> None:
    """Remove the epoch checkpoints (``train.keep_last: false``, or ``--rerun``)."""
    for name in CHECKPOINTS:
        store.remove(folder / name)


def finished_record(cfg: RunConfig, setup: Setup, state: dict, results: Path) -> dict:
    image_shape = tuple(setup.loaders["train"].dataset[0]["image"].shape)
    run_id = cfg.run_id()
    history = state["history"]
    return base_record(cfg) | {
        "status": "done",
        "history": history,
        "best": best_epoch(history, cfg.train.select),
        "last": {k: history[-1][k] for k in ("epoch", "val", "test")},
        "cost": cost_record(cfg, setup, image_shape),
        "dataset": {
            "name": cfg.data.name,
            "num_classes": setup.method.num_classes,
            "image_shape": list(image_shape),
        }
        | {f"{s}_size": len(loader.dataset) for s, loader in setup.loaders.items()},
        "teacher": setup.notes or None,
        "checkpoint": str(Path("checkpoints") / run_id / "model.pt"),
        "device": str(setup.device),
        "precision": dtype_name(setup.dtype),  # the student's (train.precision)
        "precision_verdict": setup.verdict,  # how auto chose it: both timings
        "finished": now(),
        "wall_time_s": state["wall_time_s"],  # every attempt's, up to its last checkpoint
        "attempts": state["attempts"],
        "resumed_from_epoch": state["resumed_from_epoch"],  # 0: the last attempt started fresh
        "checkpoint_faults": state["checkpoint_faults"],
    }


def best_epoch(history: list[dict], metric: str) -> dict:
    """The epoch with the best validation ``metric`` (ties: the later epoch); NaN counts last."""

    best = max(reversed(history), key=lambda entry: selection_score(entry, metric))
    return {k: best[k] for k in ("epoch", "val", "test")} | {"selected_by": metric}


def selection_score(entry: dict, metric: str) -> float:
    """An epoch's validation ``metric`` (accuracy where the split lacks it); NaN counts last."""
    value = entry["val"].get(metric, entry["val"]["acc"])
    return -math.inf if math.isnan(value) else value


def cost_record(cfg: RunConfig, setup: Setup, image_shape: tuple) -> dict:
    student = model_cost(cfg.student, setup.student, image_shape)
    teacher = model_cost(cfg.teacher, setup.teacher, image_shape) if setup.teacher else None
    return {
        "student": asdict(student),
        "teacher": asdict(teacher) if teacher else None,
        "method_params": count_params(setup.method),  # training-time only, not deployed
        "flop_convention": FLOP_CONVENTION,
    }


COSTS: dict[str, Cost] = {}  # per architecture and input shape, for this process


def model_cost(model_cfg, model: nn.Module, image_shape: tuple) -> Cost:
    """``measure_cost`` once per architecture (name, kwargs) and input shape in this process:
    a sweep's runs share a student and a teacher, and tracing them costs seconds each time."""
    key = json.dumps([model_cfg.name, model_cfg.kwargs, list(image_shape)], sort_keys=True)
    if key not in COSTS:
        COSTS[key] = measure_cost(model, image_shape)
    return COSTS[key]


def base_record(cfg: RunConfig) -> dict:
    return {
        "run_id": cfg.run_id(),
        "config": asdict(cfg),
        "code": code_version(asdict(cfg)),
        "kdbench_version": __version__,
        "git_sha": git_sha(),
        "packages": package_versions(),
        "host": os.uname().nodename,
    }


def failed_record(
    cfg: RunConfig, err: BaseException, started: float, status: str = "failed"
) -> dict:
    return base_record(cfg) | {
        "status": status,
        "error": f"{type(err).__name__}: {err}".rstrip(": "),
        "traceback": traceback.format_exc(),
        "wall_time_s": time.time() - started,
        "finished": now(),
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}, but CUDA is not available here (use cpu or auto)")
    return device


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device``, channels_last (faster convolutions on CUDA and on CPU alike)."""
    return model.to(device).to(memory_format=torch.channels_last)


def to_device(batch: dict, device: torch.device) -> dict:
    moved = {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }
    if moved["image"].dim() == 4:
        moved["image"] = moved["image"].contiguous(memory_format=torch.channels_last)
    return moved


def say(text: str) -> None:
    """The harness's log line (stderr): resumes, reused results, damaged files set aside."""
    print(text, file=sys.stderr, flush=True)


def show_progress(requested: bool | None) -> bool:
    if requested is not None:
        return requested
    return sys.stderr.isatty() and not os.environ.get("CI")


class progress_bar:
    """A rich progress bar yielding an ``advance()`` callable; a no-op when disabled."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self.enabled, self.label, self.total = enabled, label, total
        self.bar: Progress | None = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        self.bar = Progress(*columns, TimeElapsedColumn(), transient=True)
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
