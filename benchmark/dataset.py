"""The dataset contract: what the harness, the teacher-output cache, ``data.train_fraction`` and
the report read from a dataset. A registered dataset is a class called with ``split`` ("train",
"val" or "test") and its ``data.params``; the harness checks each split against this contract
when it builds a run (:func:`check_dataset`), so a plugin that misses a piece fails with one
line before anything trains.

Items (``dataset[i]``), a dict with:

- ``image``: a float tensor ``[C, H, W]`` (normalised; every item the same shape);
- ``label``: an int64 scalar tensor (or int) in ``[0, num_classes)``; for two classes 1 = fake;
- ``index``: ``i`` itself (per-kind metrics and methods such as CRD read it);
- optional ``video``: the key of the video the frame comes from (its full relative path, so
  ``Deepfakes/071_054`` and ``Face2Face/071_054`` differ): video-level metrics need it;
- optional ``view``: which fixed augmented view the item is (see ``num_views``).

Attributes:

- ``num_classes`` (int ≥ 2);
- optional ``labels``: every item's label, in order (``data.train_fraction`` and CRD's
  class-aware negatives need it);
- optional ``videos``: every item's video key, in order (``data.train_fraction`` keeps whole
  videos);
- optional ``kinds``: every item's kind of fake (``"real"`` for reals), for per-kind AUC;
- optional ``num_views`` and ``fingerprint``: a dataset whose training augmentation is a fixed
  set of ``num_views`` views, that accepts ``dataset[(i, view)]``, and whose ``fingerprint``
  string changes whenever its items do, lets the teacher's outputs be cached.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from kdbench.errors import ConfigError

SPLITS = ("train", "val", "test")
# the channel statistics every shipped image dataset normalises with (timm's ImageNet defaults)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_split(split: str) -> None:
    """Every dataset's first check: ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid values: {SPLITS}")


ITEM_KEYS = ("image", "label", "index")  # every item has these
OPTIONAL_ITEM_KEYS = ("video", "view")
PER_ITEM = ("labels", "videos", "kinds")  # optional attributes: one entry per item


def check_dataset(dataset: Any, where: str) -> None:
    """Raise ConfigError (one line, naming ``where``) unless ``dataset`` keeps the contract:
    its attributes, and its first item's keys, types and label range."""
    if len(dataset) == 0:
        raise ConfigError(f"{where}: the dataset is empty")
    classes = getattr(dataset, "num_classes", None)
    if not isinstance(classes, int) or classes < 2:
        raise ConfigError(f"{where}: num_classes must be an int >= 2, got {classes!r}")
    for name in PER_ITEM:
        values = getattr(dataset, name, None)
        if values is not None and len(values) != len(dataset):
            raise ConfigError(f"{where}: {name} has {len(values)} entries for {len(dataset)} items")
    if hasattr(dataset, "num_views") != hasattr(dataset, "fingerprint"):
        raise ConfigError(f"{where}: num_views and fingerprint go together (teacher cache)")
    with unchanged_random_state():  # reading an item may draw an augmentation
        item = dataset[0]
    check_item(item, classes, f"{where}, item 0")


@contextmanager
def unchanged_random_state() -> Iterator[None]:
    """Python's, numpy's and torch's (CPU) random state as they were before the block: a check
    must not change what a seeded run draws afterwards."""
    python, legacy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(python)
    np.random.set_state(legacy)


def check_item(item: Any, classes: int, where: str) -> None:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a dict with keys {list(ITEM_KEYS)}, got {item!r:.60}")
    missing = [key for key in ITEM_KEYS if key not in item]
    if missing:
        raise ConfigError(
            f"{where}: missing {', '.join(map(repr, missing))} (an item has "
            f"{', '.join(ITEM_KEYS)}; optionally {', '.join(OPTIONAL_ITEM_KEYS)})"
        )
    image = item["image"]
    if not (isinstance(image, torch.Tensor) and image.is_floating_point() and image.ndim == 3):
        shown = (
            f"{image.dtype} tensor of shape {list(image.shape)}"
            if torch.is_tensor(image)
            else repr(type(image))
        )
        raise ConfigError(f"{where}: image must be a float tensor [C, H, W], got {shown}")
    label = int(item["label"])
    if not 0 <= label < classes:
        raise ConfigError(f"{where}: label {label} is outside [0, {classes})")
    if int(item["index"]) != 0:
        raise ConfigError(f"{where}: index must be the item's position (0), got {item['index']}")
