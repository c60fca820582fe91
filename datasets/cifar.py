"""CIFAR-100 from the python-pickle folder torchvision uses, for the classic KD leaderboards.

``<root>/cifar-100-python/{train,test,meta}`` (``root`` may also be that folder itself), as
torchvision's ``CIFAR100(download=True)`` leaves it; nothing is downloaded here. The files are
read with an unpickler that only rebuilds numpy arrays and plain containers.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from kdbench.config import ConfigError
from kdbench.dataset import check_split
from kdbench.registry import DATASETS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"

FOLDER = "cifar-100-python"
CLASSES = 100
SIDE = 32
PAD = 4
# per-channel statistics of the CIFAR-100 training images (as in RepDistiller)
MEAN = (0.5071, 0.4867, 0.4408)
STD = (0.2675, 0.2565, 0.2761)
SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class ArrayUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and builtin containers; refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a CIFAR file")
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    """A CIFAR batch file as a dict with ``str`` keys (``latin1``, as torchvision reads them)."""
    if not path.exists():
        raise ConfigError(
            f"{path} not found: expected torchvision's CIFAR-100 folder <root>/{FOLDER}/"
            "{train,test,meta} (e.g. from torchvision.datasets.CIFAR100(root, download=True))"
        )
    try:
        data = ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ConfigError(f"{path}: not a CIFAR-100 python file ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a CIFAR-100 python file (no dict inside)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``[N, 3, 32, 32]`` and fine labels int64 ``[N]`` of one CIFAR-100 file."""
    data = read_pickle(path)
    images = np.asarray(data.get("data"))
    labels = np.asarray(data.get("fine_labels", []), dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * SIDE * SIDE:
        raise ConfigError(f"{path}: 'data' should be uint8 [N, 3072], got {images.shape}")
    if len(labels) != len(images) or labels.min(initial=0) < 0 or labels.max(initial=0) >= CLASSES:
        raise ConfigError(f"{path}: 'fine_labels' should be {len(images)} labels in 0..99")
    return images.reshape(-1, 3, SIDE, SIDE), labels


def held_out(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A boolean mask of ``size`` images, the same number from every class, chosen by ``seed``."""
    if size % CLASSES:
        raise ConfigError(
            f"val_size must be a multiple of {CLASSES} (per-class balance), got {size}"
        )
    order = np.random.default_rng(seed).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # by class, random within it
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - np.searchsorted(labels[order], labels[order])
    return rank < size // CLASSES


def cifar_folder(root: str | Path) -> Path:
    root = Path(root)
    return root if root.name == FOLDER or not (root / FOLDER).exists() else root / FOLDER


@DATASETS.register("cifar100")
class CIFAR100(Dataset):
    """CIFAR-100 (torchvision's pickle folder); random crop 32 pad 4 + flip on train."""

    num_classes = CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        root: str = "data",
        val_size: int = 0,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        """``val_size``: images held out of train as the val split (balanced by class, chosen
        by ``seed``). 0: val is the test set, as RepDistiller and most leaderboards report."""
        check_split(split)
        folder = cifar_folder(root)
        from_test = split == "test" or (split == "val" and val_size == 0)
        images, labels = read_batch(folder / ("test" if from_test else "train"))
        if not from_test and val_size:
            keep = held_out(labels, val_size, seed) == (split == "val")
            images, labels = images[keep], labels[keep]
        self.split = split
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = labels
        self.augment = augment and split == "train"
        self.classes = class_names(folder / "meta")
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        if self.augment:
            image = random_crop_flip(image)
        return {
            "image": (image.float() / 255 - self.mean) / self.std,
            "label": torch.tensor(self.labels[index], dtype=torch.int64),
            "index": index,
        }


def random_crop_flip(image: torch.Tensor) -> torch.Tensor:
    """torchvision's RandomCrop(32, padding=4) (zero fill) then RandomHorizontalFlip."""
    padded = F.pad(image, (PAD, PAD, PAD, PAD))
    top, left = torch.randint(0, 2 * PAD + 1, (2,)).tolist()
    image = padded[:, top : top + SIDE, left : left + SIDE]
    return image.flip(-1) if torch.rand(()) < 0.5 else image


def class_names(path: Path) -> list[str]:
    """The 100 fine label names from ``meta``; numbered names when it is missing."""
    if not path.exists():
        return [str(i) for i in range(CLASSES)]
    return list(read_pickle(path).get("fine_label_names", range(CLASSES)))
