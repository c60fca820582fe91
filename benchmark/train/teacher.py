"""The frozen teacher's side of a distillation step: which weights, and how each step gets the
teacher's outputs, cheap live passes or cached ones.

A distillation run pays for the teacher's forward on every step, and a benchmark suite pays it
again for every method, student and seed. Two things make that cheap:

- ``LiveTeacher`` runs the teacher in eval mode under ``inference_mode``, channels_last, and in
  bf16 autocast where the device does bf16 natively (``teacher.precision``).
- ``CachedTeacher`` serves outputs computed once per (sample, view) and stored under the cache
  dir (``kdbench.train.cache``), shared by every run that distils the same teacher weights on
  the same data. It needs a dataset whose augmentation is a fixed set of views (see
  ``ViewSampler``).

Both return the logits and only the features the method reads, as float32 tensors, so a method
sees bit-identical inputs from either.
"""

from __future__ import annotations

import pickle
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from kdbench.config import ConfigError, RunConfig
from kdbench.console import say
from kdbench.method import Method
from kdbench.models import build_model
from kdbench.output import Output
from kdbench.paths import cache_root
from kdbench.train.cache import CacheUnusable, CacheWarning, TeacherCache
from kdbench.train.checkpoint import read_digest, verify
from kdbench.train.device import place
from kdbench.train.precision import autocast, batch_shape, choose_dtype, dtype_name
from kdbench.train.record import trusted_result


class LiveTeacher:
    """Runs the frozen teacher on each batch; returns logits + ``features`` in float32."""

    def __init__(
        self, model: nn.Module, features: list[str], device: torch.device, dtype: torch.dtype
    ) -> None:
        self.model = model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.features, self.device, self.dtype = list(features), device, dtype

    def raw(self, images: Tensor) -> dict[str, Tensor]:
        """Logits and the kept features in the teacher's own dtype (inference tensors)."""
        images = images.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            out = self.model(images)
            return {"logits": out.logits} | {name: out.feature(name) for name in self.features}

    def __call__(self, batch: dict) -> Output:
        return as_output({k: v.float().clone() for k, v in self.raw(batch["image"]).items()})


def as_output(tensors: dict[str, Tensor]) -> Output:
    features = {k: v for k, v in tensors.items() if k != "logits"}
    return Output(tensors["logits"], features)


class CachedTeacher:
    """Teacher outputs looked up by ``(batch["index"], batch["view"])`` in a stored table."""

    def __init__(self, table: dict[str, Tensor], views: int, device: torch.device) -> None:
        self.table, self.views, self.device = table, views, device

    def __call__(self, batch: dict) -> Output:
        rows = (batch["index"] * self.views + batch["view"]).cpu()
        return as_output(
            {k: v[rows].to(self.device, non_blocking=True).float() for k, v in self.table.items()}
        )


def cacheable(dataset: Dataset) -> str | None:
    """Why ``dataset``'s teacher outputs cannot be cached, or ``None`` if they can.

    A cacheable dataset declares ``num_views`` (its fixed augmented views; 1 = none), accepts
    ``(index, view)`` keys, and has a ``fingerprint`` that changes whenever its content does.
    """
    missing = [a for a in ("num_views", "fingerprint") if not hasattr(dataset, a)]
    if missing:
        return f"{type(dataset).__name__} does not declare {' and '.join(missing)}"
    return None


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
    problem = verify(Path(checkpoint)) if read_digest(Path(checkpoint)) else None
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
