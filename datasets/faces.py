"""One frame → one face crop: the largest face found, cut as a square around its box, or aligned
on its five keypoints when the detector gives them; the centred square when there is none."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from kdbench.datasets.align import alignment, footprint, warp
from kdbench.datasets.detectors import AligningDetector

if TYPE_CHECKING:
    from kdbench.datasets.preprocess import CropSettings


def crop_frame(frame: np.ndarray, detect, settings: CropSettings) -> tuple[np.ndarray, dict]:
    """The ``size``×``size`` crop of a BGR ``frame`` and its record: ``box`` (the frame region
    ``(x0, y0, x1, y1)`` it covers), ``face`` (whether one was found) and, for an aligning
    detector, the five ``keypoints`` it was aligned on."""
    height, width = frame.shape[:2]
    face = largest_face(frame, detect, settings.detect_side)
    if face is None:
        box = square_box(width / 2, height / 2, min(width, height), width, height)
        return crop(frame, box, settings.size), {"box": box, "face": False}
    if isinstance(detect, AligningDetector):
        points = np.asarray(detect.keypoints(frame, face), dtype=np.float64).reshape(5, 2)
        matrix = alignment(points, settings.size, settings.scale)
        record = {"box": footprint(matrix, settings.size), "face": True,
                  "keypoints": np.round(points, 1).tolist()}  # fmt: skip
        return warp(frame, matrix, settings.size), record
    x, y, w, h = face
    box = square_box(x + w / 2, y + h / 2, settings.scale * max(w, h), width, height)
    return crop(frame, box, settings.size), {"box": box, "face": True}


def largest_face(frame: np.ndarray, detect, detect_side: int) -> np.ndarray | None:
    """The largest face's ``(x, y, w, h)`` in ``frame``'s pixels, searched for on the frame
    shrunk to a longer side of ``detect_side``; None when there is none."""
    shrink = min(1.0, detect_side / max(frame.shape[:2]))
    small = frame
    if shrink < 1:
        small = cv2.resize(frame, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    faces = np.asarray(detect(small)).reshape(-1, 4)
    if len(faces) == 0:
        return None
    return faces[np.argmax(faces[:, 2] * faces[:, 3])] / shrink


def square_box(
    cx: float, cy: float, side: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """A square of ``side`` centred on ``(cx, cy)``, shrunk to fit and shifted into the frame."""
    side = max(1, min(round(side), width, height))
    x0 = min(max(round(cx - side / 2), 0), width - side)
    y0 = min(max(round(cy - side / 2), 0), height - side)
    return x0, y0, x0 + side, y0 + side


def crop(frame: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    patch = frame[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interpolation)
