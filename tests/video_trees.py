"""Helpers for the dataset tests: real mp4 clips, an FF++ tree, a deterministic face detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kdbench.datasets.preprocess import CropSettings
from kdbench.datasets.synthff_disk import write_mp4
from kdbench.registry import DETECTORS

DARK = 8  # frames darker than this on average have "no face" for CentreDetector


@DETECTORS.register("test-centre")
class CentreDetector:
    """Finds one "face": the centred box of half the frame's size, unless the frame is dark."""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if image.mean() < DARK:
            return np.zeros((0, 4), np.int64)
        return np.array([[w // 4, h // 4, w // 2, h // 2]])


def clip(path: Path, frames: int = 3, size: tuple[int, int] = (48, 64), dark: int = -1) -> Path:
    """A real mp4 of ``frames`` grey frames (frame i has value 40 + 20 i), frame ``dark`` black."""
    images = np.zeros((frames, *size, 3), np.uint8)
    for i in range(frames):
        images[i] = 0 if i == dark else 40 + 20 * i
    write_mp4(path, images)
    return path


def junk(path: Path) -> Path:
    """A file named like a video that is not one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    return path


PAIRS = {
    "train": [["000", "001"], ["002", "003"]],
    "val": [["004", "005"]],
    "test": [["006", "007"]],
}
FAKES = ("Deepfakes", "Face2Face")
CORRUPT = "manipulated_sequences/Face2Face/c23/videos/006_007"
SETTINGS = CropSettings(frames=3, size=16, detector="test-centre")


def ff_tree(root: Path) -> Path:
    """8 originals, their fakes by two manipulations, 2 videos outside the splits, 1 corrupt."""
    (root / "splits").mkdir(parents=True)
    for split, pairs in PAIRS.items():
        (root / "splits" / f"{split}.json").write_text(json.dumps(pairs))
    for a, b in [pair for pairs in PAIRS.values() for pair in pairs]:
        for video in (a, b):
            clip(root / f"original_sequences/youtube/c23/videos/{video}.mp4")
        for fake in FAKES:
            for video in (f"{a}_{b}", f"{b}_{a}"):
                clip(root / f"manipulated_sequences/{fake}/c23/videos/{video}.mp4")
    clip(root / "original_sequences/actors/c23/videos/01__walking.mp4")
    clip(root / "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walking__X1.mp4")
    junk(root / f"{CORRUPT}.mp4")
    return root
