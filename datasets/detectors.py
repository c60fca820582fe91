"""Face detectors for preprocessing, registered by name so a better one plugs in by name.

A detector is built with keyword arguments only and called on one BGR ``uint8`` frame; it
returns the faces it found as an ``int`` array ``[K, 4]`` of ``(x, y, w, h)`` boxes in that
frame's pixels (``K = 0`` when there is none). A detector that also finds landmarks (an
``AligningDetector``) has ``keypoints(image, box)``: the five keypoints of
``kdbench.datasets.align`` inside one ``(x, y, w, h)`` box, as a float array ``[5, 2]`` in
``image``'s pixels; its crops are then aligned on them instead of cut from the box.

Register a new one with ``@DETECTORS.register("retinaface")`` in a module passed as
``kdbench --plugin MODULE`` or exposed under the entry-point group ``kdbench.detectors``;
preprocessing workers import the detector's module themselves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from kdbench.config import ConfigError
from kdbench.datasets.align import five_points
from kdbench.registry import DETECTORS

ALIGN_EXTRA = "pip install 'kdbench[align]'"


class FaceDetector(Protocol):
    def __call__(self, image: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class AligningDetector(Protocol):
    def __call__(self, image: np.ndarray) -> np.ndarray: ...

    def keypoints(self, image: np.ndarray, box: np.ndarray) -> np.ndarray: ...


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


@DETECTORS.register("dlib")
class DlibDetector:
    """dlib's HOG frontal-face detector and its 68-point landmark predictor (the 300-W model
    that ``face_recognition_models`` ships), as DeepfakeBench's preprocessing uses them; crops
    are aligned on five keypoints. Needs the optional extra ``kdbench[align]``."""

    def __init__(self, *, upsample: int = 1, predictor: str | None = None) -> None:
        """``upsample``: times dlib doubles the frame before searching (1: faces from about
        40 px on, as DeepfakeBench); ``predictor``: a 68-point ``.dat`` file instead of the
        shipped one."""
        dlib = import_dlib()
        path = Path(predictor) if predictor else shipped_model("shape_predictor_68_face_landmarks")
        if not path.is_file():
            raise ConfigError(f"dlib landmark model {path}: no such file")
        self.dlib = dlib
        self.find = dlib.get_frontal_face_detector()
        self.predict = dlib.shape_predictor(str(path))
        self.upsample = upsample

    def __call__(self, image: np.ndarray) -> np.ndarray:
        rects = self.find(np.ascontiguousarray(image[..., ::-1]), self.upsample)
        boxes = [(r.left(), r.top(), r.width(), r.height()) for r in rects]
        return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)

    def keypoints(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        return five_points(self.landmarks(image, box))

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The 68 landmarks ``[68, 2]`` of the face in ``(x, y, w, h)`` ``box``."""
        x, y, w, h = (round(float(v)) for v in box)
        shape = self.predict(
            np.ascontiguousarray(image[..., ::-1]), self.dlib.rectangle(x, y, x + w, y + h)
        )
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def import_dlib():
    """``dlib``, or the one line that says how to install it."""
    try:
        import dlib
    except ImportError as err:
        raise ConfigError(f"--detector dlib needs the optional extra: {ALIGN_EXTRA}") from err
    return dlib


def shipped_model(name: str) -> Path:
    """A model file of ``face_recognition_models``, found without importing it (its
    ``__init__`` needs ``pkg_resources``, which new setuptools no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"--detector dlib needs the optional extra: {ALIGN_EXTRA}")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / f"{name}.dat"
