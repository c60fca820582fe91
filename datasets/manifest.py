"""A prepared dataset on disk: crops named by frame, a ``frames.json`` marker per finished video,
and ``manifest.csv`` with one row per crop (the table every face-crop dataset reads)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from kdbench.config import ConfigError
from kdbench.results import write_atomic

if TYPE_CHECKING:
    from kdbench.datasets.preprocess import CropSettings, VideoJob

MANIFEST = "manifest.csv"
MARKER = "frames.json"
COLUMNS = (
    "dataset", "video", "frame", "label", "split", "manipulation", "compression",
    "box", "face", "path",
)  # fmt: skip


def frame_name(index: int) -> str:
    return f"{index:04d}.png"


def write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode())


def read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_prepared(folder: Path, settings: CropSettings) -> bool:
    marker = read_marker(folder)
    return marker is not None and marker.get("settings") == asdict(settings)


def build_manifest(
    folder: Path, dataset: str, jobs: Sequence[VideoJob], settings: CropSettings
) -> pd.DataFrame:
    """One row per crop of every prepared job, plus the rows of an earlier manifest for
    videos not among ``jobs`` (another compression, say) whose crops are still there."""
    rows = []
    for job in jobs:
        marker = read_marker(folder / job.video)
        if marker is None or marker.get("settings") != asdict(settings):
            continue
        for record in marker["frames"]:
            rows.append(
                {
                    "dataset": dataset,
                    "video": job.video,
                    "frame": record["frame"],
                    "label": job.label,
                    "split": job.split,
                    "manipulation": job.manipulation,
                    "compression": job.compression,
                    "box": " ".join(map(str, record["box"])),
                    "face": int(record["face"]),
                    "path": f"{job.video}/{frame_name(record['frame'])}",
                }
            )
    current = pd.DataFrame(rows, columns=list(COLUMNS))
    earlier = read_manifest(folder / MANIFEST) if (folder / MANIFEST).exists() else None
    if earlier is None:
        return current
    keep = ~earlier["video"].isin({job.video for job in jobs})
    keep &= earlier["path"].map(lambda p: (folder / p).exists())
    return pd.concat([earlier[keep], current], ignore_index=True).sort_values(
        ["video", "frame"], ignore_index=True
    )


def read_manifest(path: Path) -> pd.DataFrame:
    """A manifest with its text columns as text ("" stays "", never NaN)."""
    text = {c: str for c in COLUMNS if c not in ("frame", "label", "face")}
    table = pd.read_csv(path, dtype=text, keep_default_na=False)
    missing = sorted(set(COLUMNS) - set(table.columns))
    if missing:
        raise ConfigError(f"{path}: not a kdbench manifest (no column {', '.join(missing)})")
    return table


def write_csv(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, table.to_csv(index=False))
