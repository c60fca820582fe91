"""Your own real/fake data as a folder tree: images to train on, or videos to prepare.

Images: ``<root>/{train,val,test}/{real,fake}/**/*.{png,jpg,jpeg}``; an image's video is its
parent folder. Videos (``kdbench data prepare folder``): the same tree with ``*.mp4`` (or
avi/mov/mkv/webm) files; their crops land in ``<out>/folder/`` as exactly such an image tree.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image

from kdbench.config import ConfigError
from kdbench.dataset import SPLITS
from kdbench.datasets.crops import CropDataset
from kdbench.datasets.preprocess import VideoJob
from kdbench.registry import DATASETS

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"

NAME = "folder"
CLASSES = {"real": 0, "fake": 1}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def tree_root(root: str | Path | None) -> Path:
    """``root``, or ``root/folder`` when that is where the split folders are."""
    if root is None:
        raise ConfigError("dataset 'folder' needs data.params.root: a folder with train/val/test")
    root = Path(root)
    if not any((root / s).is_dir() for s in SPLITS) and (root / NAME).is_dir():
        return root / NAME
    return root


def scan(root: Path, split: str, suffixes: set[str]) -> list[tuple[Path, int]]:
    """Files under ``<root>/<split>/{real,fake}/`` with one of ``suffixes``, with labels."""
    if not (root / split).is_dir():
        raise ConfigError(f"{root / split} does not exist: expected {root}/{split}/{{real,fake}}/")
    files = []
    for name, label in CLASSES.items():
        for path in sorted((root / split / name).rglob("*")):
            if path.suffix.lower() in suffixes and path.is_file():
                files.append((path, label))
    return files


def check_readable(paths: list[Path], where: str, shown: int = 5) -> None:
    """Raise one ``ConfigError`` naming every image in ``paths`` that does not open, before any
    training (a header and checksum check, about 0.2 ms a PNG, not a full decode)."""
    bad = [path for path in paths if not readable(path)]
    if bad:
        listed = ", ".join(str(path) for path in bad[:shown])
        more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
        raise ConfigError(
            f"{len(bad)} of {len(paths)} images under {where} cannot be read "
            f"(corrupt or not images): {listed}{more}"
        )


def readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception:  # whatever Pillow raises, the file is not a usable image
        return False
    return True


def video_jobs(root: str | Path) -> list[VideoJob]:
    """Every video of every split present, keyed by its path relative to ``root``."""
    root = tree_root(root)
    jobs = []
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        for path, label in scan(root, split, VIDEO_SUFFIXES):
            video = path.relative_to(root).with_suffix("").as_posix()
            jobs.append(VideoJob(path, video, label, split))
    if not jobs:
        raise ConfigError(f"no videos under {root}/{{train,val,test}}/{{real,fake}}/")
    return jobs


@DATASETS.register(NAME)
class FolderDataset(CropDataset):
    """Real/fake images from <root>/{train,val,test}/{real,fake}/**; video = parent folder."""

    def listing(self, split: str, root: str | None) -> tuple[Path, pd.DataFrame]:
        """``root``: the folder of ``{train,val,test}/{real,fake}/``; its images, sorted."""
        root = tree_root(root)
        files = scan(root, split, IMAGE_SUFFIXES)
        check_readable([p for p, _ in files], f"{root}/{split}")
        table = pd.DataFrame(
            {
                "path": [p.relative_to(root).as_posix() for p, _ in files],
                "label": [label for _, label in files],
                "video": [p.parent.relative_to(root).as_posix() for p, _ in files],
            }
        )
        table = table.sort_values("path", ignore_index=True)
        table["frame"] = table.groupby("video").cumcount()
        return root, table
