"""The one training loop every method runs through: frozen teacher, trained student + method."""

from __future__ import annotations

import math
import os
import random
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdbench import __version__
from kdbench.config import ConfigError, DataConfig, RunConfig
from kdbench.cost import FLOP_CONVENTION, count_params, measure_cost
from kdbench.method import Context, Method, build_method, check_params
from kdbench.metrics import classification_metrics
from kdbench.models import build_model, model_names
from kdbench.output import Output
from kdbench.precision import autocast, batch_shape, check_precision, choose_dtype, dtype_name
from kdbench.registry import DATASETS, METHODS, UnknownNameError, unknown_message
from kdbench.results import (
    cache_root,
    checkpoint_dir,
    git_sha,
    package_versions,
    read_result,
    write_json,
)
from kdbench.teacher import (
    CachedTeacher,
    LiveTeacher,
    TeacherCache,
    ViewSampler,
    cacheable,
)

SPLITS = ("train", "val", "test")
LR_SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("adamw", "sgd")


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


def validate(cfg: RunConfig) -> None:
    """Cheap checks of names and parameters, before anything is built or written."""
    method_cls = METHODS.get(cfg.method.name)
    check_params(f"method {cfg.method.name!r}", method_cls, cfg.method.params)
    for data in filter(None, (cfg.data, cfg.data.test)):
        check_params(f"dataset {data.name!r}", DATASETS.get(data.name), data.params)
    known = set(model_names())
    for model in [cfg.student] + ([cfg.teacher] if cfg.teacher else []):
        if model.name not in known:
            raise UnknownNameError(unknown_message("model", model.name, known))
    if method_cls.needs_teacher and cfg.teacher is None:
        raise ConfigError(
            f"method {cfg.method.name!r} distils from a teacher: set teacher.name and "
            "teacher.run (a teacher run id) or teacher.checkpoint"
        )
    check_precision(cfg.train.precision, "train.precision")
    if cfg.teacher:
        check_precision(cfg.teacher.precision, "teacher.precision")
    if cfg.train.optimizer not in OPTIMIZERS:
        raise ConfigError(unknown_message("optimizer", cfg.train.optimizer, OPTIMIZERS))
    if cfg.train.schedule not in LR_SCHEDULES:
        raise ConfigError(unknown_message("schedule", cfg.train.schedule, LR_SCHEDULES))


def run(cfg: RunConfig, results: Path, progress: bool | None = None) -> dict:
    """Train ``cfg`` to completion (resuming from its last checkpoint) and write its result JSON.

    A finished run is not trained again: its existing record is returned. A run that raises
    is recorded with ``status: failed`` and the error, then the error propagates.
    """
    validate(cfg)
    results = Path(results)
    run_id = cfg.run_id()
    done = read_result(results, run_id)
    if done and done.get("status") == "done":
        return done
    started = time.time()
    try:
        record = train(cfg, results, progress=show_progress(progress))
    except Exception as err:
        write_json(results / "runs" / f"{run_id}.json", failed_record(cfg, err, started))
        raise
    record["wall_time_s"] = time.time() - started
    write_json(results / "runs" / f"{run_id}.json", record)
    return record


def train(cfg: RunConfig, results: Path, progress: bool = False) -> dict:
    """The training loop proper; returns the finished run's record (not yet written)."""
    seed_everything(cfg.seed)
    setup = build(cfg, results)
    folder = checkpoint_dir(results, cfg.run_id())
    state = resume(folder / "last.pt", setup)
    for epoch in range(state["epoch"], cfg.train.epochs):
        set_lr(setup.optimizer, cfg.train, epoch)
        setup.method.set_epoch(epoch)
        entry = train_epoch(setup, epoch, cfg.seed, progress)
        entry |= {split: evaluate(setup, split) for split in ("val", "test")}
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        save_checkpoint(folder / "last.pt", setup, state)
    torch.save(setup.student.state_dict(), folder / "model.pt")
    return finished_record(cfg, setup, state["history"], results)


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
    return Setup(
        loaders, student, teacher, outputs, method, optimizer, device, notes, dtype, verdict
    )


def teacher_side(cfg: RunConfig, teacher, weights, method: Method, train_set, device):
    """How each step gets the teacher's outputs: stored ones when the config allows and the
    dataset has fixed views, else a live pass; plus notes on which, for the run's record."""
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
    store = TeacherCache(cache_root(), weights, train_set, dtype, device)
    table = store.table(live, cfg.data.eval_batch_size)
    took = time.perf_counter() - started
    cached = CachedTeacher(table, train_set.num_views, device)
    return cached, notes | {"cache": True, "cache_dir": str(store.folder), "cache_load_s": took}


def build_datasets(data: DataConfig) -> dict[str, Dataset]:
    """train and val from ``data``; test from ``data.test`` when set (cross-dataset)."""
    sources = {s: data.test if s == "test" and data.test else data for s in SPLITS}
    sets = {s: DATASETS.get(src.name)(split=s, **src.params) for s, src in sources.items()}
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
        record = read_result(results, t.run)
        if not record or record.get("status") != "done":
            raise ConfigError(
                f"teacher.run={t.run!r}: no finished run with that id in {results / 'runs'}"
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
    teacher = build_model(t.name, num_classes, checkpoint, **t.kwargs)
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
    return Context(s_out, t_out, num_classes, len(train_set))


def train_epoch(setup: Setup, epoch: int, seed: int, progress: bool) -> dict:
    """One pass over the training split; mean of every named loss term, timings."""
    setup.student.train()
    setup.method.train()
    loader = setup.loaders["train"]
    loader.sampler.set_epoch(seed, epoch)  # the same batches after a resume
    totals: dict[str, torch.Tensor] = {}
    steps, wait, started = 0, 0.0, time.perf_counter()
    with progress_bar(progress, f"epoch {epoch + 1}", len(loader)) as advance:
        tick = time.perf_counter()
        for batch in loader:
            wait += time.perf_counter() - tick
            losses = train_step(setup, to_device(batch, setup.device))
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + value.detach().float()
            steps += 1
            advance()
            tick = time.perf_counter()
    terms = {name: float(total) / max(steps, 1) for name, total in totals.items()}
    lr = setup.optimizer.param_groups[0]["lr"]
    took = time.perf_counter() - started
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train": terms,
        "steps": steps,
        "time_s": took,
        "data_wait_s": wait,  # time the loop waited for batches (the loader's share)
    }


def train_step(setup: Setup, batch: dict) -> dict[str, torch.Tensor]:
    t_out = setup.teacher_outputs(batch) if setup.teacher_outputs else None
    with autocast(setup.device, setup.dtype):
        s_out = setup.student(batch["image"])
        s_out = Output(s_out.logits.float(), s_out.features)  # losses in fp32 under bf16
        losses = setup.method.losses(batch, s_out, t_out)
    for name, value in losses.items():
        if not torch.isfinite(value):
            raise FloatingPointError(f"loss term {name!r} is {float(value)}: training diverged")
    setup.optimizer.zero_grad(set_to_none=True)
    setup.method.backward(losses, s_out)
    setup.optimizer.step()
    return losses


@torch.no_grad()
def evaluate(setup: Setup, split: str) -> dict[str, float]:
    """Metrics of the student on ``split`` (frame- and video-level for binary tasks, and per
    kind of fake where the dataset names them in ``kinds``)."""
    setup.student.eval()
    kinds = getattr(setup.loaders[split].dataset, "kinds", None)
    probs, labels, videos, index = [], [], [], []
    for batch in setup.loaders[split]:
        with autocast(setup.device, setup.dtype):
            logits = setup.student(to_device(batch, setup.device)["image"]).logits
        probs.append(logits.float().softmax(1).cpu())
        labels.append(batch["label"])
        videos.extend(batch["video"])
        index.extend(batch["index"].tolist() if kinds is not None else [])
    return classification_metrics(
        torch.cat(probs).numpy(),
        torch.cat(labels).numpy(),
        videos,
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


def save_checkpoint(path: Path, setup: Setup, state: dict) -> None:
    """Everything needed to continue after ``state['epoch']`` epochs; written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "model": setup.student.state_dict(),
        "method": setup.method.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "epoch": state["epoch"],
        "history": state["history"],
        "rng": torch.get_rng_state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def resume(path: Path, setup: Setup) -> dict:
    """Load the last checkpoint into ``setup`` if there is one; the state to continue from."""
    if not path.exists():
        return {"epoch": 0, "history": []}
    blob = torch.load(path, map_location=setup.device, weights_only=True)
    setup.student.load_state_dict(blob["model"])
    setup.method.load_state_dict(blob["method"])
    setup.optimizer.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["rng"].cpu())
    return {"epoch": blob["epoch"], "history": blob["history"]}


def finished_record(cfg: RunConfig, setup: Setup, history: list[dict], results: Path) -> dict:
    image_shape = tuple(setup.loaders["train"].dataset[0]["image"].shape)
    run_id = cfg.run_id()
    return base_record(cfg) | {
        "status": "done",
        "history": history,
        "best": best_epoch(history, cfg.train.select),
        "last": {k: history[-1][k] for k in ("epoch", "val", "test")},
        "cost": cost_record(setup, image_shape),
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
    }


def best_epoch(history: list[dict], metric: str) -> dict:
    """The epoch with the best validation ``metric`` (ties: the later epoch); NaN counts last."""

    def score(entry: dict) -> float:
        value = entry["val"].get(metric, entry["val"]["acc"])
        return -math.inf if math.isnan(value) else value

    best = max(reversed(history), key=score)
    return {k: best[k] for k in ("epoch", "val", "test")} | {"selected_by": metric}


def cost_record(setup: Setup, image_shape: tuple) -> dict:
    student = measure_cost(setup.student, image_shape)
    teacher = measure_cost(setup.teacher, image_shape) if setup.teacher is not None else None
    return {
        "student": asdict(student),
        "teacher": asdict(teacher) if teacher else None,
        "method_params": count_params(setup.method),  # training-time only, not deployed
        "flop_convention": FLOP_CONVENTION,
    }


def base_record(cfg: RunConfig) -> dict:
    return {
        "run_id": cfg.run_id(),
        "config": asdict(cfg),
        "kdbench_version": __version__,
        "git_sha": git_sha(),
        "packages": package_versions(),
        "host": os.uname().nodename,
    }


def failed_record(cfg: RunConfig, err: BaseException, started: float) -> dict:
    return base_record(cfg) | {
        "status": "failed",
        "error": f"{type(err).__name__}: {err}",
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
