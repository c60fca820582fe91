"""The frozen teacher's side of a distillation step: cheap live passes and cached outputs.

A distillation run pays for the teacher's forward on every step, and a benchmark suite pays it
again for every method, student and seed. Two things make that cheap:

- ``LiveTeacher`` runs the teacher in eval mode under ``inference_mode``, channels_last, and in
  bf16 autocast where the device does bf16 natively (``teacher.precision``).
- ``CachedTeacher`` serves outputs computed once per (sample, view) and stored under the cache
  dir, shared by every run that distils the same teacher weights on the same data. It needs a
  dataset whose augmentation is a fixed set of views (see ``ViewSampler``).

Both return the logits and only the features the method reads, as float32 tensors, so a method
sees bit-identical inputs from either.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from kdbench.output import Output
from kdbench.precision import autocast

CACHE_FORMAT = 1


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


class ViewSampler(Sampler):
    """The training order, drawn from ``(seed, epoch)`` (``set_epoch``) so a resumed run sees
    the same batches: a permutation of the samples, each keyed ``(index, view)`` with one of the
    dataset's ``views`` fixed augmented views, or a plain index when ``views`` is ``None`` (the
    dataset augments at random by itself)."""

    def __init__(self, size: int, views: int | None) -> None:
        self.size, self.views = size, views
        self.generator = torch.Generator().manual_seed(0)

    def set_epoch(self, seed: int, epoch: int) -> None:
        self.generator.manual_seed(seed * 100_003 + epoch)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        order = torch.randperm(self.size, generator=self.generator).tolist()
        if self.views is None:
            yield from order
            return
        views = torch.randint(self.views, (self.size,), generator=self.generator).tolist()
        for i in order:
            yield i, views[i]


def cacheable(dataset: Dataset) -> str | None:
    """Why ``dataset``'s teacher outputs cannot be cached, or ``None`` if they can.

    A cacheable dataset declares ``num_views`` (its fixed augmented views; 1 = none), accepts
    ``(index, view)`` keys, and has a ``fingerprint`` that changes whenever its content does.
    """
    missing = [a for a in ("num_views", "fingerprint") if not hasattr(dataset, a)]
    if missing:
        return f"{type(dataset).__name__} does not declare {' and '.join(missing)}"
    return None


class TeacherCache:
    """Stored teacher outputs: one folder per (teacher weights, dataset, precision, device type),
    one memory-mapped file per output (``logits`` or a feature), rows ``index * views + view``.
    Files are written whole and renamed into place, so concurrent runs never read half a file.
    """

    def __init__(self, root: Path, weights: Path, dataset: Dataset, dtype, device) -> None:
        key = {
            "format": CACHE_FORMAT,
            "weights": file_digest(weights),
            "dataset": dataset.fingerprint,
            "views": dataset.num_views,
            "dtype": str(dtype),
            "device": torch.device(device).type,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.folder = Path(root) / "teacher-outputs" / digest
        self.key, self.dataset = key, dataset

    def table(self, teacher: LiveTeacher, batch_size: int) -> dict[str, Tensor]:
        """Every output ``teacher`` keeps, computing (once) the ones not stored yet."""
        names = ["logits", *teacher.features]
        missing = [n for n in names if not (self.folder / f"{n}.json").exists()]
        if missing:
            self.compute(teacher, missing, batch_size)
        return {name: self.load(name) for name in names}

    def compute(self, teacher: LiveTeacher, names: list[str], batch_size: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "key.json").write_text(json.dumps(self.key, indent=2))
        keys = [(i, v) for i in range(len(self.dataset)) for v in range(self.dataset.num_views)]
        loader = DataLoader(self.dataset, batch_size=batch_size, sampler=keys)
        arrays: dict[str, np.memmap] = {}
        tag = uuid.uuid4().hex[:8]
        row = 0
        for batch in loader:
            out = teacher.raw(batch["image"])
            for name in names:
                value = out[name].contiguous()
                if name not in arrays:
                    arrays[name] = self.open(name, value, len(keys), tag)
                arrays[name][row : row + len(value)] = raw_bits(value)
            row += len(batch["image"])
        for name, array in arrays.items():
            array.flush()
            self.publish(name, tag, shape=list(array.shape), dtype=str(out[name].dtype))

    def open(self, name: str, value: Tensor, rows: int, tag: str) -> np.memmap:
        bits = raw_bits(value)
        path = self.folder / f"{name}.npy.{tag}.tmp"
        return np.lib.format.open_memmap(path, "w+", bits.dtype, (rows, *bits.shape[1:]))

    def publish(self, name: str, tag: str, shape: list[int], dtype: str) -> None:
        """Rename the finished array into place, then its metadata (which marks it done)."""
        os.replace(self.folder / f"{name}.npy.{tag}.tmp", self.folder / f"{name}.npy")
        meta = self.folder / f"{name}.json.{tag}.tmp"
        meta.write_text(json.dumps({"shape": shape, "dtype": dtype}))
        os.replace(meta, self.folder / f"{name}.json")

    def load(self, name: str) -> Tensor:
        """One stored output, read into memory."""
        meta = json.loads((self.folder / f"{name}.json").read_text())
        tensor = torch.from_numpy(np.load(self.folder / f"{name}.npy"))
        return tensor.view(torch.bfloat16) if meta["dtype"] == "torch.bfloat16" else tensor


def raw_bits(value: Tensor) -> np.ndarray:
    """A tensor as numpy without changing a bit (bf16 as its int16 bit pattern)."""
    value = value.detach().cpu()
    return (value.view(torch.int16) if value.dtype == torch.bfloat16 else value).numpy()


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()[:16]
