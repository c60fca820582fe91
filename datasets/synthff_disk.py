"""SynthFF written as real mp4 videos in the FaceForensics++ layout (``kdbench data synth``).

Real videos become ``original_sequences/youtube/<c>/videos/NNN.mp4``, fakes
``manipulated_sequences/{spatial,frequency,both}/<c>/videos/<a>_<b>.mp4`` (their artifact
family is the manipulation), with ``c23`` holding the hq corpus, ``c40`` lq and ``c0`` raw, and
``splits/{train,val,test}.json`` as FF++ pairs. SynthFF's own video-level split is kept: each
split's originals are numbered consecutively and paired, and a split's fakes of each family
take the pair names ``a_b``, ``b_a`` in turn. An odd original out in a split is not written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from kdbench.config import ConfigError
from kdbench.dataset import SPLITS
from kdbench.datasets.faceforensics import MANIPULATED, ORIGINALS
from kdbench.datasets.synthff import SynthFFCorpus, SynthFFSpec, generate

COMPRESSION = {"raw": "c0", "hq": "c23", "lq": "c40"}
FPS = 25
MARKER = "synthff.json"


@dataclass
class Layout:
    """Where each SynthFF video goes: FF++ ids per video and the split pairs."""

    ids: list[str | None]  # per SynthFF video: its FF++ id, None when left out
    pairs: dict[str, list[list[str]]] = field(default_factory=dict)  # split -> [[a, b], ...]


def ff_layout(kinds: np.ndarray, splits: np.ndarray) -> Layout:
    """FF++ ids for videos with artifact ``kinds`` and ``splits`` (one entry per video)."""
    ids: list[str | None] = [None] * len(kinds)
    reals = [np.flatnonzero((kinds == "none") & (splits == s)) for s in SPLITS]
    width = max(3, len(str(sum(len(r) for r in reals))))
    layout = Layout(ids)
    number = 0
    for split, members in zip(SPLITS, reals, strict=True):
        pairs = []
        for a, b in zip(members[0::2], members[1::2], strict=False):  # an odd one out: None
            ids[a], ids[b] = f"{number:0{width}d}", f"{number + 1:0{width}d}"
            pairs.append([ids[a], ids[b]])
            number += 2
        layout.pairs[split] = pairs
        names = [name for a, b in pairs for name in (f"{a}_{b}", f"{b}_{a}")]
        for kind in sorted(set(kinds) - {"none"}):
            fakes = np.flatnonzero((kinds == kind) & (splits == split))
            if len(fakes) > len(names):
                raise ConfigError(
                    f"SynthFF {split}: {len(fakes)} {kind} fakes but only {len(pairs)} pairs of "
                    "originals to name them after; use more videos"
                )
            for video, name in zip(fakes, names, strict=False):
                ids[video] = name
    return layout


def write_ff_layout(
    out: str | Path,
    qualities: tuple[str, ...] = ("hq", "lq"),
    *,
    videos: int = 200,
    frames: int = 8,
    size: int = 128,
    seed: int = 0,
) -> dict:
    """Write the corpus for each quality under ``out``; returns what was written.

    Refuses a non-empty ``out`` that holds something else; the same request again does nothing.
    """
    out = Path(out)
    request = {"videos": videos, "frames": frames, "size": size, "seed": seed,
               "qualities": list(qualities)}  # fmt: skip
    if written := already_written(out, request):
        return written
    unknown = [q for q in qualities if q not in COMPRESSION]
    if unknown or not qualities:
        raise ConfigError(f"qualities {list(qualities)}: choose from {list(COMPRESSION)}")
    counts: dict[str, int] = {}
    layout = None
    for quality in qualities:
        spec = SynthFFSpec(videos=videos, frames=frames, size=size, quality=quality, seed=seed)
        corpus = generate(spec)
        kinds, splits = corpus.artifacts[::frames], corpus.splits[::frames]
        if layout is None:
            layout = ff_layout(kinds, splits)
        counts[COMPRESSION[quality]] = write_videos(corpus, kinds, layout, out, frames, quality)
    for split, pairs in layout.pairs.items():
        (out / "splits").mkdir(parents=True, exist_ok=True)
        (out / "splits" / f"{split}.json").write_text(json.dumps(pairs))
    summary = request | {"written": counts, "left_out": sum(i is None for i in layout.ids)}
    (out / MARKER).write_text(json.dumps(summary, indent=1))
    return summary


def already_written(out: Path, request: dict) -> dict | None:
    if not out.exists() or not any(out.iterdir()):
        return None
    marker = out / MARKER
    previous = json.loads(marker.read_text()) if marker.exists() else None
    if previous is None or {k: previous.get(k) for k in request} != request:
        raise ConfigError(f"{out} is not empty and holds something else: choose a new --out")
    return previous


def write_videos(
    corpus: SynthFFCorpus, kinds: np.ndarray, layout: Layout, out: Path, frames: int, quality: str
) -> int:
    """One mp4 per laid-out video; the number written."""
    compression = COMPRESSION[quality]
    written = 0
    for video, (kind, name) in enumerate(zip(kinds, layout.ids, strict=True)):
        if name is None:
            continue
        if kind == "none":
            folder = out / ORIGINALS / "youtube" / compression / "videos"
        else:
            folder = out / MANIPULATED / str(kind) / compression / "videos"
        write_mp4(folder / f"{name}.mp4", corpus.images[video * frames : (video + 1) * frames])
        written += 1
    return written


def write_mp4(path: Path, images: np.ndarray) -> None:
    """RGB ``uint8 [T, H, W, 3]`` frames as an MPEG-4 Part 2 (``mp4v``) video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = images.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write mp4v video {path}")
    try:
        for image in images:
            writer.write(np.ascontiguousarray(image[..., ::-1]))
    finally:
        writer.release()
