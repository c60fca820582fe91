"""Celeb-DF v2 (Li et al. 2020): its on-disk layout, official test list and face crops.

Raw layout (each folder with or without a ``videos/`` subfolder)::

    <root>/Celeb-real/id0_0000.mp4        real
    <root>/YouTube-real/00000.mp4         real
    <root>/Celeb-synthesis/id0_id1_0000.mp4   fake
    <root>/List_of_testing_videos.txt     "<label> <folder>/<file>.mp4", 1 = real, 0 = fake

The test split is that list; of the other videos a fixed tenth (by a hash of the name, so it
does not depend on what else is on disk) is the validation split, the rest is train.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from kdbench.config import ConfigError
from kdbench.datasets.crops import CropDataset, load_manifest
from kdbench.datasets.preprocess import VideoJob
from kdbench.registry import DATASETS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"

NAME = "celebdf"
FOLDERS = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}  # our label: 1 = fake
TEST_LIST = "List_of_testing_videos.txt"
VAL_SHARE = 0.1


def read_test_list(path: Path) -> dict[str, int]:
    """``<folder>/<name>`` (no suffix) → label (1 = fake) from the official test list."""
    if not path.exists():
        raise ConfigError(f"Celeb-DF test list {path} not found (it ships with Celeb-DF v2)")
    videos = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1") or parts[1].count("/") != 1:
            raise ConfigError(
                f"{path}:{number}: expected '<1 real | 0 fake> <folder>/<file>.mp4', got {line!r}"
            )
        folder, name = parts[1].split("/")
        if folder not in FOLDERS:
            raise ConfigError(
                f"{path}:{number}: unknown folder {folder!r} (known: {list(FOLDERS)})"
            )
        label = 1 - int(parts[0])  # the list says 1 = real
        if label != FOLDERS[folder]:
            raise ConfigError(f"{path}:{number}: {parts[1]} is labelled {parts[0]} (1 = real)")
        videos[f"{folder}/{Path(name).stem}"] = label
    return videos


def video_jobs(root: str | Path) -> tuple[list[VideoJob], list[str]]:
    """Every video under ``root`` with its split, and the test-list entries not on disk."""
    root = Path(root)
    test = read_test_list(root / TEST_LIST)
    jobs = []
    for folder, label in FOLDERS.items():
        directory = (
            root / folder / "videos" if (root / folder / "videos").is_dir() else root / folder
        )
        for path in sorted(directory.glob("*.mp4")):
            key = f"{folder}/{path.stem}"
            split = "test" if key in test else held_out(key)
            video = path.relative_to(root).with_suffix("").as_posix()
            manipulation = folder if label else ""
            jobs.append(VideoJob(path, video, label, split, manipulation))
    if not jobs:
        raise ConfigError(f"no Celeb-DF videos under {root}: expected {', '.join(FOLDERS)}/*.mp4")
    found = {f"{Path(job.video).parts[0]}/{Path(job.video).name}" for job in jobs}
    return jobs, sorted(set(test) - found)


def held_out(key: str) -> str:
    """``val`` for a fixed VAL_SHARE of names, ``train`` for the rest."""
    bucket = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 1000
    return "val" if bucket < VAL_SHARE * 1000 else "train"


@DATASETS.register(NAME)
class CelebDF(CropDataset):
    """Celeb-DF v2 face crops (from `kdbench data prepare celebdf`); test = the official list."""

    def listing(self, split: str, root: str | None) -> tuple[Path, pd.DataFrame]:
        """``root``: the ``--out`` folder of ``kdbench data prepare celebdf``."""
        folder, table = load_manifest(root, NAME)
        return folder, table[table["split"] == split]
