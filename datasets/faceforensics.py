"""FaceForensics++ (Rössler et al. 2019): its on-disk layout, official splits and face crops.

Raw layout (as the official download script writes it)::

    <root>/original_sequences/youtube/{raw|c0|c23|c40}/videos/000.mp4 ... 999.mp4
    <root>/manipulated_sequences/<manipulation>/<compression>/videos/<target>_<source>.mp4
    <root>/splits/{train,val,test}.json   (or --splits DIR; lists of [a, b] id pairs)

A pair ``[a, b]`` owns the originals ``a`` and ``b`` and the fakes ``a_b`` and ``b_a``.
Videos no split owns (``actors``, DeepFakeDetection) are not prepared.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from kdbench.config import ConfigError
from kdbench.dataset import SPLITS, check_split
from kdbench.datasets.crops import CropDataset, frames_per_video, load_manifest
from kdbench.datasets.preprocess import VideoJob, sample_indices
from kdbench.registry import DATASETS, unknown_message

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "2026-12-01"

NAME = "ff++"
CLASSIC = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
COMPRESSIONS = ("raw", "c0", "c23", "c40")  # raw and c0 are the same lossless version
ORIGINALS = "original_sequences"
MANIPULATED = "manipulated_sequences"
SPLITS_URL = "https://github.com/ondyari/FaceForensics/tree/master/dataset/splits"
FAKES = ("weighted", "balanced", "all")


def read_splits(folder: Path) -> dict[str, str]:
    """Video id (``071``, ``071_054``) → split, from ``train/val/test.json`` in ``folder``."""
    owner: dict[str, str] = {}
    for split in SPLITS:
        path = folder / f"{split}.json"
        if not path.exists():
            raise ConfigError(
                f"FF++ split file {path} not found: put the official train/val/test.json "
                f"({SPLITS_URL}) in <root>/splits or pass --splits DIR"
            )
        for pair in json.loads(path.read_text()):
            if not (
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, str) for i in pair)
            ):
                raise ConfigError(f"{path}: expected a list of [id, id] pairs, found {pair!r}")
            a, b = pair
            for video in (a, b, f"{a}_{b}", f"{b}_{a}"):
                if owner.setdefault(video, split) != split:
                    raise ConfigError(f"{path}: {video!r} is in both {owner[video]} and {split}")
    return owner


def find_videos(root: Path) -> list[tuple[str, str, list[Path]]]:
    """``(manipulation, compression, videos)`` per video folder; "" for the originals."""
    sources = [("", d) for d in sorted((root / ORIGINALS).glob("*/*"))]
    sources += [(d.parent.name, d) for d in sorted((root / MANIPULATED).glob("*/*"))]
    found = []
    for manipulation, folder in sources:
        videos = sorted((folder / "videos").glob("*.mp4"))
        if folder.name in COMPRESSIONS and videos:
            found.append((manipulation, folder.name, videos))
    return found


def video_jobs(
    root: str | Path,
    splits: str | Path | None = None,
    compressions: Sequence[str] | None = None,
    manipulations: Sequence[str] | None = None,
) -> tuple[list[VideoJob], int]:
    """The videos to prepare (default: every compression and manipulation found) and the
    number of videos found that no split owns (left out)."""
    root = Path(root)
    found = find_videos(root)
    if not found:
        raise ConfigError(
            f"no FF++ videos under {root}: expected {ORIGINALS}/youtube/<compression>/videos/"
            f"*.mp4 and {MANIPULATED}/<manipulation>/<compression>/videos/*.mp4"
        )
    compressions = pick("compression", compressions, sorted({c for _, c, _ in found}))
    fakes = sorted({m for m, _, _ in found if m})
    manipulations = pick("manipulation", manipulations, fakes)
    owner = read_splits(Path(splits) if splits else root / "splits")
    jobs, unsplit = [], 0
    for manipulation, compression, videos in found:
        if compression not in compressions or (manipulation and manipulation not in manipulations):
            continue
        for path in videos:
            split = owner.get(path.stem)
            if split is None:
                unsplit += 1
                continue
            video = path.relative_to(root).with_suffix("").as_posix()
            label = int(bool(manipulation))
            jobs.append(VideoJob(path, video, label, split, manipulation, compression))
    return jobs, unsplit


def pick(kind: str, wanted: Sequence[str] | None, found: list[str]) -> list[str]:
    """``wanted`` checked against what is on disk; everything found when not given."""
    if not wanted:
        return found
    for name in wanted:
        if name not in found:
            raise ConfigError(unknown_message(f"FF++ {kind} on disk", name, found))
    return list(wanted)


@DATASETS.register(NAME)
class FaceForensics(CropDataset):
    """FaceForensics++ face crops (from `kdbench data prepare ff++`), official splits."""

    def __init__(
        self,
        split: str = "train",
        *,
        root: str | None = None,
        compression: str = "c23",
        manipulations: Sequence[str] = CLASSIC,
        frames: int | None = None,
        fakes: str = "weighted",
        size: int | None = None,
        augment: bool = True,
    ) -> None:
        """``root``: the ``--out`` folder of ``kdbench data prepare ff++``. ``compression``:
        raw (= c0), c23 or c40. ``frames``: at most this many crops per video (None: all).
        ``fakes`` (train split only; M = number of manipulations): ``weighted`` lists every
        real crop M times, ``balanced`` keeps 1/M of each fake video's crops, ``all`` neither.
        ``size``: resize crops on load."""
        check_split(split)
        if fakes not in FAKES:
            raise ConfigError(unknown_message("fakes mode", fakes, FAKES))
        folder, table = load_manifest(root, NAME)
        table = select(table, compression, list(manipulations))
        table = table[table["split"] == split]
        table = frames_per_video(table, frames)
        if split == "train":
            table = balance(table, fakes, len(manipulations))
        self.keep(folder, table, split, size, augment)


def select(table: pd.DataFrame, compression: str, manipulations: list[str]) -> pd.DataFrame:
    """The crops of one compression: originals plus the chosen manipulations."""
    if compression not in COMPRESSIONS:
        raise ConfigError(unknown_message("FF++ compression", compression, COMPRESSIONS))
    same = ("raw", "c0") if compression in ("raw", "c0") else (compression,)
    table = table[table["compression"].isin(same)]
    present = sorted(set(table["manipulation"]) - {""})
    if table.empty or not (table["manipulation"] == "").any():
        raise ConfigError(f"no prepared FF++ {compression} originals; run data prepare for it")
    for name in manipulations:
        if name not in present:
            raise ConfigError(
                unknown_message(f"prepared {compression} manipulation", name, present)
            )
    return table[table["manipulation"].isin(["", *manipulations])]


def balance(table: pd.DataFrame, fakes: str, manipulations: int) -> pd.DataFrame:
    """Even out 1 real : ``manipulations`` fake videos (see ``FaceForensics``)."""
    if fakes == "all" or manipulations < 2:
        return table
    real, fake = table[table["label"] == 0], table[table["label"] == 1]
    if fakes == "weighted":
        real = real.loc[real.index.repeat(manipulations)]
    else:
        keep = []
        for rows in fake.groupby("video", sort=False).indices.values():
            count = max(1, round(len(rows) / manipulations))
            keep.extend(rows[sample_indices(len(rows), count)])
        fake = fake.iloc[sorted(keep)]
    return pd.concat([real, fake]).sort_values(["video", "frame"], kind="stable", ignore_index=True)
