"""Face detectors for preprocessing, registered by name so a better one plugs in by name.

A detector is built with keyword arguments only and called on one BGR ``uint8`` frame; it
returns the faces it found as an ``int`` array ``[K, 4]`` of ``(x, y, w, h)`` boxes in that
frame's pixels (``K = 0`` when there is none). Register a new one with
``@DETECTORS.register("retinaface")`` in a module passed as ``kdbench --plugin MODULE`` or
exposed under the entry-point group ``kdbench.detectors``; preprocessing workers import the
detector's module themselves.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from kdbench.registry import DETECTORS


class FaceDetector(Protocol):
    def __call__(self, image: np.ndarray) -> np.ndarray: ...


@DETECTORS.register("haar")
class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade (``cv2.data.haarcascades``), on the
    histogram-equalised grey frame. Fast and dependency-free; misses turned and dark faces
    more often than CNN detectors."""

    def __init__(
        self,
        *,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_face: float = 0.1,
    ) -> None:
        """``min_face``: the smallest face searched for, as a share of the frame's shorter side."""
        path = cv2.data.haarcascades + cascade
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise ValueError(f"cannot load the Haar cascade {path!r}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face = min_face

    def __call__(self, image: np.ndarray) -> np.ndarray:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        side = max(int(self.min_face * min(grey.shape)), 1)
        faces = self.cascade.detectMultiScale(
            grey, self.scale_factor, self.min_neighbors, minSize=(side, side)
        )
        return np.asarray(faces, dtype=np.int64).reshape(-1, 4)
