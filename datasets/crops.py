"""What every face-crop dataset shares: a table of image files with labels and videos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from kdbench.config import ConfigError
from kdbench.dataset import IMAGENET_MEAN, IMAGENET_STD, check_split
from kdbench.datasets.manifest import MANIFEST, read_manifest
from kdbench.datasets.preprocess import sample_indices


class CropDataset(Dataset):
    """Images listed in a table (columns ``path`` relative to a folder, ``label``, ``video``).

    Each item: ``{"image": float32 [3, H, W] ImageNet-normalised, "label": int64 scalar tensor
    (1 = fake), "video": str (its path relative to the dataset root), "index": int}``.

    A subclass gives the table of a split (``listing``); one with more parameters than these
    overrides ``__init__`` and ends it with ``keep``.
    """

    num_classes = 2

    def __init__(
        self,
        split: str = "train",
        *,
        root: str | None = None,
        frames: int | None = None,
        size: int | None = None,
        augment: bool = True,
    ) -> None:
        """``root``: the dataset's folder (for prepared datasets the ``--out`` folder of
        ``kdbench data prepare``). ``frames``: at most this many images per video (None: all).
        ``size``: resize on load (None: as stored; images of different sizes need it to
        batch). ``augment``: flip train images at random."""
        check_split(split)
        folder, table = self.listing(split, root)
        self.keep(folder, frames_per_video(table, frames), split, size, augment)

    def listing(self, split: str, root: str | None) -> tuple[Path, pd.DataFrame]:
        """The folder the paths are relative to, and the table of ``split``."""
        raise NotImplementedError

    def keep(
        self, folder: Path, table: pd.DataFrame, split: str, size: int | None, augment: bool
    ) -> None:
        """Hold ``table``'s images, labels and videos (an empty table is an error)."""
        if table.empty:
            raise ConfigError(f"{type(self).__name__}: the {split} split of {folder} is empty")
        self.folder = Path(folder)
        self.split = split
        self.size = size
        self.augment = augment and split == "train"
        # numpy arrays, not lists of str: DataLoader workers then share them without copies
        self.paths = table["path"].to_numpy(dtype=str)
        self.labels = table["label"].to_numpy(dtype=np.int64)
        self.videos = table["video"].to_numpy(dtype=str)
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        path = self.folder / self.paths[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read image {path}")
        if self.size and image.shape[:2] != (self.size, self.size):
            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        rgb = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)
        tensor = (rgb.float() / 255 - self.mean) / self.std
        if self.augment and torch.rand(()) < 0.5:
            tensor = tensor.flip(-1)
        return {
            "image": tensor,
            "label": torch.tensor(self.labels[index], dtype=torch.int64),
            "video": str(self.videos[index]),
            "index": index,
        }


def prepared_folder(root: str | Path | None, name: str) -> Path:
    """The folder holding ``manifest.csv``: ``root`` itself or ``root/<name>``."""
    if root is None:
        raise ConfigError(
            f"dataset {name!r} needs data.params.root: the --out folder of "
            f"`kdbench data prepare {name}`"
        )
    for folder in (Path(root), Path(root) / name):
        if (folder / MANIFEST).exists():
            return folder
    raise ConfigError(
        f"no {MANIFEST} in {root} or {Path(root) / name}: run "
        f"`kdbench data prepare {name} --root <the raw dataset> --out {root}` first"
    )


def load_manifest(root: str | Path | None, name: str) -> tuple[Path, pd.DataFrame]:
    folder = prepared_folder(root, name)
    table = read_manifest(folder / MANIFEST)
    return folder, table.sort_values(["video", "frame"], ignore_index=True)


def frames_per_video(table: pd.DataFrame, count: int | None) -> pd.DataFrame:
    """At most ``count`` rows per video, spread uniformly over its (frame-sorted) rows."""
    if count is None:
        return table
    if count < 1:
        raise ConfigError(f"frames must be >= 1 (or null for all), got {count}")
    keep = []
    for rows in table.groupby("video", sort=False).indices.values():
        keep.extend(rows[sample_indices(len(rows), count)])
    return table.iloc[np.sort(np.asarray(keep, dtype=np.int64))].reset_index(drop=True)
