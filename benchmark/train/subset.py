"""Limited data: a fixed fraction of a training split's videos (``data.train_fraction``), so that
a student can learn from less than its teacher saw (``teacher.data.train_fraction``)."""

from __future__ import annotations

import math

import numpy as np
from torch.utils.data import Dataset

from kdbench.config import ConfigError

SUBSET_SEED = 0  # the same videos for every seed and method: the data is not a replicate


def video_fraction(videos: list[str], labels: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the samples of ``ceil(fraction · n)`` videos of each label, drawn once with a
    fixed seed; every frame of a chosen video is kept. Sorted."""
    rng = np.random.default_rng(SUBSET_SEED)
    videos, labels = np.asarray(videos), np.asarray(labels)
    keep = []
    for label in np.unique(labels):
        own = np.unique(videos[labels == label])
        chosen = rng.permutation(own)[: max(1, math.ceil(fraction * len(own)))]
        keep.append(np.flatnonzero((labels == label) & np.isin(videos, chosen)))
    return np.sort(np.concatenate(keep))


class VideoSubset(Dataset):
    """The samples ``keep`` of ``dataset``, re-indexed ``0..len(keep)-1`` (the ``index`` of an
    item is its position here, as the teacher cache and CRD's memory bank expect). It speaks the
    dataset contract of what it wraps: ``num_classes``, ``labels``, ``videos``, ``num_views``
    and a ``fingerprint`` that names the subset."""

    def __init__(self, dataset: Dataset, keep: np.ndarray, fraction: float) -> None:
        self.dataset, self.keep, self.fraction = dataset, keep, fraction
        self.num_classes = dataset.num_classes
        self.labels = np.asarray(dataset.labels)[keep]
        names = video_names(dataset)
        self.videos = [names[i] for i in keep]
        if hasattr(dataset, "num_views"):
            self.num_views = dataset.num_views

    @property
    def fingerprint(self) -> str:
        return f"{self.dataset.fingerprint}-videos{self.fraction:g}-seed{SUBSET_SEED}"

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        position, view = key if isinstance(key, tuple) else (key, None)
        inner = int(self.keep[position])
        item = self.dataset[(inner, view) if view is not None else inner]
        return item | {"index": position}


def video_names(dataset: Dataset) -> list[str]:
    """The video of every sample; each sample its own video for a dataset without videos."""
    videos = getattr(dataset, "videos", None)
    return [str(v) for v in videos] if videos is not None else [str(i) for i in range(len(dataset))]


def limit(dataset: Dataset, fraction: float) -> Dataset:
    """``dataset`` itself at fraction 1, else its ``VideoSubset`` of that fraction of videos."""
    if fraction == 1.0:
        return dataset
    if not hasattr(dataset, "labels"):
        raise ConfigError(
            f"data.train_fraction needs a dataset with labels; {type(dataset).__name__} has none"
        )
    keep = video_fraction(video_names(dataset), np.asarray(dataset.labels), fraction)
    return VideoSubset(dataset, keep, fraction)
