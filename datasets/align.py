"""Face alignment: five keypoints mapped by a similarity transform onto a reference template.

The five keypoints are, in image order, the left eye's centre, the right eye's centre, the nose
tip, the left and the right mouth corner ("left" = smaller x in the image). The template is
InsightFace's ArcFace 112×112 reference (MIT), made left-right symmetric and given in units of
the face square; ``template(size, scale)`` shrinks it about the crop's centre by ``scale``, so
the face plus a ``scale - 1`` margin fills a ``size``×``size`` crop — the placement
DeepfakeBench's preprocessing uses (``scale`` 1.3).
"""

from __future__ import annotations

import cv2
import numpy as np

# (x, y) in units of the face square; eyes, nose and mouth corners symmetric about x = 0.5
UNIT_TEMPLATE = np.array(
    [[0.3427, 0.4607], [0.6573, 0.4607], [0.5, 0.6405], [0.3697, 0.8240], [0.6303, 0.8240]]
)
# dlib's 68-point layout (iBUG 300-W): the points of each eye, the nose tip, the mouth corners
EYE_LEFT, EYE_RIGHT = slice(36, 42), slice(42, 48)
NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 30, 48, 54


def template(size: int, scale: float) -> np.ndarray:
    """The five reference points ``[5, 2]`` in the pixels of a ``size``×``size`` crop."""
    return size * (0.5 + (UNIT_TEMPLATE - 0.5) / scale)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The five keypoints ``[5, 2]`` of 68 landmarks ``[68, 2]`` (eye centres = means of the
    six points round each eye)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return np.stack(
        [
            landmarks[EYE_LEFT].mean(axis=0),
            landmarks[EYE_RIGHT].mean(axis=0),
            landmarks[NOSE_TIP],
            landmarks[MOUTH_LEFT],
            landmarks[MOUTH_RIGHT],
        ]
    )


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The ``2×3`` rotation + uniform scale + shift that maps ``source`` points ``[N, 2]`` onto
    ``target`` with the least squared error (Umeyama 1991; never a reflection)."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mean_s, target - mean_t
    variance = (s**2).sum() / len(s)
    if variance == 0:
        raise ValueError("the source points coincide: no similarity transform")
    u, d, vt = np.linalg.svd(t.T @ s / len(s))
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    factor = np.trace(np.diag(d) @ sign) / variance
    shift = mean_t - factor * rotation @ mean_s
    return np.hstack([factor * rotation, shift[:, None]])


def alignment(keypoints: np.ndarray, size: int, scale: float) -> np.ndarray:
    """The ``2×3`` matrix taking frame pixels to the aligned crop's pixels."""
    return similarity(keypoints, template(size, scale))


def warp(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``size``×``size`` aligned crop (black where it leaves the frame, as DeepfakeBench)."""
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR)


def footprint(matrix: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the frame box holding the crop's (possibly turned) square."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    inverse = cv2.invertAffineTransform(matrix)
    frame_corners = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.floor(frame_corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(frame_corners.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1), int(y1)
