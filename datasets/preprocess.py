"""Videos → face crops: sample frames, crop the largest face, write PNGs and one manifest.

``prepare(jobs, out, dataset)`` writes ``<out>/<dataset>/<video>/<frame>.png`` for every
``VideoJob`` and ``<out>/<dataset>/manifest.csv`` with one row per crop. Videos run in parallel
processes; each finished video leaves a ``frames.json`` marker, so a second ``prepare`` skips it.
A video that cannot be read is reported in the ``Summary`` and skipped, never fatal.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.progress import track

from kdbench.config import ConfigError
from kdbench.datasets.faces import crop_frame
from kdbench.datasets.manifest import (
    MANIFEST,
    MARKER,
    build_manifest,
    frame_name,
    is_prepared,
    write_csv,
    write_text,
)
from kdbench.registry import DETECTORS

QUIET_FFMPEG = {"OPENCV_FFMPEG_LOGLEVEL": "-8"}  # unreadable videos are reported by us instead


@dataclass(frozen=True)
class CropSettings:
    """How crops are made; a video prepared with other settings is prepared again."""

    frames: int = 32  # frames sampled uniformly per video (all of them when it has fewer)
    size: int = 256  # side of the square PNG crops
    scale: float = 1.3  # the face box is enlarged to a square this many times its longer side
    # (aligned crops: the face template shrunk by it, so the face plus its margin fills a crop)
    detector: str = "haar"  # a name in DETECTORS; one that gives keypoints aligns the crops
    detect_side: int = 640  # frames are shrunk to this longer side before detection

    def __post_init__(self) -> None:
        if self.frames < 1 or self.size < 8 or self.scale < 1 or self.detect_side < 32:
            raise ConfigError(
                f"crop settings {self}: need frames >= 1, size >= 8, scale >= 1, detect_side >= 32"
            )


@dataclass(frozen=True)
class VideoJob:
    """One source video and what the manifest says about its crops."""

    source: Path
    video: str  # path relative to the dataset root, no suffix: the output folder and the key
    label: int  # 1 = fake
    split: str  # train | val | test
    manipulation: str = ""  # the manipulation's folder name; "" for real videos
    compression: str = ""  # e.g. c23; "" where the dataset has one version


@dataclass
class Summary:
    """What one ``prepare`` did."""

    folder: Path
    videos: int  # jobs given
    done: int = 0  # videos cropped now
    skipped: int = 0  # already prepared with the same settings
    frames: int = 0  # crops written now
    no_face: int = 0  # of those, frames where no face was found (centre crop instead)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)
    rows: int = 0  # crops in the manifest
    seconds: float = 0.0


@dataclass
class VideoResult:
    video: str
    frames: int = 0
    no_face: int = 0
    error: str | None = None


class VideoError(RuntimeError):
    """A video that cannot be decoded (unreadable, empty or truncated)."""


def prepare(
    jobs: Sequence[VideoJob],
    out: Path,
    dataset: str,
    settings: CropSettings | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> Summary:
    """Crop every video of ``jobs`` not yet prepared, then rewrite the manifest."""
    settings = settings or CropSettings()
    started = time.perf_counter()
    folder = Path(out) / dataset
    check_unique(jobs)
    detector_module = DETECTORS.get(settings.detector).__module__
    todo = [job for job in jobs if not is_prepared(folder / job.video, settings)]
    if todo:
        check_detector(settings.detector)
    summary = Summary(folder, videos=len(jobs), skipped=len(jobs) - len(todo))
    workers = min(workers or available_cpus(), max(len(todo), 1))
    results = crop_all(todo, folder, settings, workers, detector_module)
    if progress:
        console = Console(stderr=True)
        results = track(results, f"{dataset}: cropping", len(todo), console=console)
    for result in results:
        if result.error is None:
            summary.done += 1
            summary.frames += result.frames
            summary.no_face += result.no_face
        else:
            summary.failed.append((result.video, result.error))
    manifest = build_manifest(folder, dataset, jobs, settings)
    write_csv(manifest, folder / MANIFEST)
    summary.rows = len(manifest)
    summary.seconds = time.perf_counter() - started
    return summary


def check_unique(jobs: Sequence[VideoJob]) -> None:
    seen: dict[str, Path] = {}
    for job in jobs:
        if job.video in seen:
            raise ConfigError(
                f"two videos map to {job.video!r}: {seen[job.video]} and {job.source}"
            )
        seen[job.video] = job.source


def check_detector(name: str) -> None:
    """Build the detector here once, so a missing extra or model is one error, not one per
    video."""
    try:
        detector_for(name)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(
            f"detector {name!r} cannot be built: {type(err).__name__}: {err}"
        ) from err


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def crop_all(
    jobs: list[VideoJob], folder: Path, settings: CropSettings, workers: int, module: str
) -> Iterator[VideoResult]:
    """Results in completion order; ``workers > 1`` runs videos in that many processes."""
    if workers <= 1:
        for key, value in QUIET_FFMPEG.items():
            os.environ.setdefault(key, value)
        for job in jobs:
            yield crop_video(job, folder, settings)
        return
    pool = ProcessPoolExecutor(
        workers, worker_context(), initializer=init_worker, initargs=(module,)
    )
    try:
        futures = [pool.submit(crop_video, job, folder, settings) for job in jobs]
        for future in as_completed(futures):
            yield future.result()
    finally:  # on Ctrl-C, drop the queue: finished videos are kept and skipped next time
        pool.shutdown(wait=True, cancel_futures=True)


def worker_context() -> multiprocessing.context.BaseContext:
    """A fork server that has imported this module once (workers start in milliseconds, and
    forking this possibly multi-threaded process is avoided); spawn where there is none."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def init_worker(detector_module: str) -> None:
    os.environ.update(QUIET_FFMPEG)
    cv2.setNumThreads(1)  # one process per core already
    importlib.import_module(detector_module)  # registers a plug-in detector in this process


_detectors: dict[str, object] = {}


def detector_for(name: str):
    """The detector ``name``, built once per process."""
    if name not in _detectors:
        _detectors[name] = DETECTORS.get(name)()
    return _detectors[name]


def crop_video(job: VideoJob, folder: Path, settings: CropSettings) -> VideoResult:
    """Decode, detect, crop and write one video; any failure is returned, not raised."""
    try:
        detect = detector_for(settings.detector)
        crops, records = [], []
        for index, frame in read_frames(job.source, settings.frames):
            image, record = crop_frame(frame, detect, settings)
            crops.append(image)
            records.append({"frame": index, **record})
        write_video(folder / job.video, crops, records, settings)
    except Exception as err:  # a bad video (or detector plug-in) must not stop the others
        reason = str(err) if isinstance(err, VideoError) else f"{type(err).__name__}: {err}"
        return VideoResult(job.video, error=reason)
    return VideoResult(job.video, len(records), sum(not r["face"] for r in records))


def read_frames(path: Path, count: int) -> Iterator[tuple[int, np.ndarray]]:
    """``count`` frames spread uniformly over the video (all when it has fewer), as
    ``(frame index, BGR image)``; raises ``VideoError`` if the video is unreadable or ends early."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError("cannot open it (not a video, or corrupt)")
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            raise VideoError("its header gives no frame count (empty or corrupt)")
        position = 0
        for index in sample_indices(total, count):
            while position < index:
                if not capture.grab():
                    raise VideoError(f"truncated: decoding stopped at frame {position} of {total}")
                position += 1
            ok, frame = capture.read()
            if not ok:
                raise VideoError(f"truncated: decoding stopped at frame {position} of {total}")
            position += 1
            yield index, frame
    finally:
        capture.release()


def sample_indices(total: int, count: int) -> list[int]:
    """The middle frame of each of ``count`` equal segments of ``total`` frames."""
    count = min(count, total)
    return [int((i + 0.5) * total / count) for i in range(count)]


def write_video(
    folder: Path, crops: list[np.ndarray], records: list[dict], settings: CropSettings
) -> None:
    """The crops as PNGs, then the marker that says this video is done (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {frame_name(r["frame"]) for r in records}
    for stale in folder.glob("*.png"):  # left by an earlier prepare with other settings
        if stale.name not in names:
            stale.unlink()
    for record, image in zip(records, crops, strict=True):
        path = folder / frame_name(record["frame"])
        if not cv2.imwrite(str(path), image):
            raise OSError(f"cannot write {path}")
    marker = {"settings": asdict(settings), "frames": records}
    write_text(folder / MARKER, json.dumps(marker))
