"""A run's data: its three splits, checked against the dataset contract, and their loaders,
the training split in a resumable order."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from kdbench.config import ConfigError, DataConfig, RunConfig
from kdbench.dataset import SPLITS, check_dataset
from kdbench.registry import DATASETS
from kdbench.train.distributed import World
from kdbench.train.subset import limit


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


def make_loader(
    dataset: Dataset, cfg: RunConfig, split: str, device, world: World | None = None
) -> DataLoader:
    """The loader of ``split``. Training: the global batches of ``data.batch_size`` in the
    ``(seed, epoch)`` order, this process's slice of each. Evaluation: this process's
    contiguous share of the split (the processes' predictions are gathered in rank order)."""
    world = world or World()
    workers = cfg.data.workers if cfg.data.workers is not None else default_workers(device)
    common = {
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "pin_memory": device.type == "cuda",
    }
    if split != "train":
        share = Subset(dataset, shard(len(dataset), world)) if world.size > 1 else dataset
        return DataLoader(share, batch_size=cfg.data.eval_batch_size, **common)
    order = ViewSampler(len(dataset), getattr(dataset, "num_views", None))
    drop_last = len(dataset) > cfg.data.batch_size
    batches = ShardedBatches(order, cfg.data.batch_size, drop_last, world)
    return DataLoader(dataset, batch_sampler=batches, **common)


def check_batch(batch_size: int, processes: int) -> None:
    if batch_size % processes:
        raise ConfigError(
            f"data.batch_size {batch_size} does not split evenly over train.devices "
            f"{processes}: the global batch is shared equally (use a multiple of {processes})"
        )


def shard(size: int, world: World) -> range:
    """This process's contiguous share of ``size`` items (the first ones one item larger)."""
    base, extra = divmod(size, world.size)
    start = world.rank * base + min(world.rank, extra)
    return range(start, start + base + (world.rank < extra))


class ShardedBatches(Sampler):
    """Batches of ``batch_size`` keys from ``order`` (``drop_last``: no incomplete last
    batch), each cut into one slice per process, this process's slice yielded: the processes
    together see the batch one process would. ``set_epoch`` reorders, as ``ViewSampler``."""

    def __init__(self, order: ViewSampler, batch_size: int, drop_last: bool, world: World):
        self.order, self.batch_size = order, batch_size
        self.drop_last, self.world = drop_last, world

    def set_epoch(self, seed: int, epoch: int) -> None:
        self.order.set_epoch(seed, epoch)

    def __len__(self) -> int:
        full, rest = divmod(len(self.order), self.batch_size)
        return full + (rest > 0 and not self.drop_last)

    def share(self, step: int, size: int) -> float:
        """The fraction of batch ``step`` that this process's slice of ``size`` keys is (1/N
        for every full batch cut N ways; the last, smaller one may cut unevenly)."""
        whole = min(self.batch_size, len(self.order) - step * self.batch_size)
        return size / whole

    def __iter__(self):
        keys = list(self.order)
        for k in range(len(self)):
            batch = keys[k * self.batch_size : (k + 1) * self.batch_size]
            part = shard(len(batch), self.world)
            yield batch[part.start : part.stop]


def default_workers(device: torch.device) -> int:
    """Loader processes: none on CPU, where they would take cores from the model (datasets
    keep decoded images in memory); on CUDA enough to keep the GPU fed, one core spared."""
    return min(8, (os.cpu_count() or 1) - 1) if device.type == "cuda" else 0


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


def dataset_labels(dataset: Dataset) -> torch.Tensor | None:
    """The label of every sample, from the dataset's ``labels`` array; ``None`` without one."""
    labels = getattr(dataset, "labels", None)
    return None if labels is None else torch.tensor(np.asarray(labels), dtype=torch.int64)
