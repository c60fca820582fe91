"""Aligned face crops: the similarity transform, the template, the aligning crop, dlib."""

from __future__ import annotations

import importlib.util
import os
import sys

import cv2
import matplotlib
import numpy as np
import pytest
from video_trees import clip

from kdbench.cli import main
from kdbench.config import ConfigError
from kdbench.datasets import preprocess
from kdbench.datasets.align import five_points, footprint, similarity, template
from kdbench.datasets.faces import crop_frame
from kdbench.datasets.preprocess import CropSettings, VideoJob, prepare
from kdbench.registry import DETECTORS

# a public-domain portrait (US Navy) that matplotlib ships; eye centres marked by hand
GRACE_HOPPER = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
HOPPER_EYES = np.array([[224.0, 190.0], [306.0, 188.0]])
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255)]  # BGR


def turn(angle_deg: float, factor: float, shift: tuple[float, float]) -> np.ndarray:
    angle = np.radians(angle_deg)
    rotation = factor * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([rotation, np.array(shift)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize(
    ("angle", "factor", "shift"), [(0, 1, (0, 0)), (30, 2.5, (40, -7)), (-75, 0.4, (3, 120))]
)
def test_similarity_recovers_a_known_rotation_scale_and_shift(angle, factor, shift):
    source = template(100, 1.3)
    known = turn(angle, factor, shift)
    assert np.allclose(similarity(source, apply(known, source)), known, atol=1e-9)


def test_similarity_is_the_least_squares_fit_and_never_a_reflection():
    rng = np.random.default_rng(0)
    source = template(64, 1.0)
    noisy = apply(turn(20, 1.5, (5, 5)), source) + rng.normal(0, 0.5, source.shape)
    # x' = a x - b y + tx, y' = b x + a y + ty is linear in (a, b, tx, ty): solve it directly
    x, y = source.T
    one, zero = np.ones_like(x), np.zeros_like(x)
    design = np.vstack([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, noisy.T.reshape(-1), rcond=None)
    assert np.allclose(similarity(source, noisy), [[a, -b, tx], [b, a, ty]], atol=1e-9)
    mirrored = source * [-1, 1]
    assert np.linalg.det(similarity(source, mirrored)[:, :2]) > 0
    with pytest.raises(ValueError, match="coincide"):
        similarity(np.ones((5, 2)), source)


def test_template_puts_the_face_plus_its_margin_in_the_crop():
    points = template(256, 1.3)
    assert points[0, 1] == points[1, 1] and points[3, 1] == points[4, 1]  # level eyes, mouth
    assert np.allclose(points[:, 0] + points[[1, 0, 2, 4, 3], 0], 256)  # mirror-symmetric
    # the margin shrinks the face by `scale` about the crop's centre
    assert np.allclose((points - 128) * 1.3, template(256, 1.0) - 128)


def test_five_points_are_the_eye_centres_nose_tip_and_mouth_corners():
    landmarks = np.arange(68 * 2, dtype=float).reshape(68, 2)
    points = five_points(landmarks)
    assert np.allclose(points[0], landmarks[36:42].mean(axis=0))
    assert np.allclose(points[1], landmarks[42:48].mean(axis=0))
    assert np.allclose(points[2:], landmarks[[30, 48, 54]])


class DotsDetector:
    """An aligning detector for a synthetic face of five coloured dots at known places."""

    def __init__(self, keypoints: np.ndarray) -> None:
        self.points = keypoints

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x0, y0 = self.points.min(axis=0) - 10
        x1, y1 = self.points.max(axis=0) + 10
        return np.array([[x0, y0, x1 - x0, y1 - y0]]).round().astype(np.int64)

    def keypoints(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        return self.points


def inside(points: np.ndarray, box: tuple) -> bool:
    x0, y0, x1, y1 = box
    return bool(np.all((points >= (x0, y0)) & (points <= (x1, y1))))


def dot_centre(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    near = np.abs(image.astype(int) - colour).sum(axis=2) < 120
    ys, xs = np.nonzero(near)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("angle", [-60, -15, 0, 20, 45])
def test_an_aligned_crop_puts_the_eyes_on_the_template_eye_line(angle):
    face = template(100, 1.0)  # a face of 100 px, turned by `angle`, in a 320 x 240 frame
    points = apply(turn(angle, 1.0, (170, 115)), face - 50)
    frame = np.full((240, 320, 3), 90, np.uint8)
    for point, colour in zip(points, COLOURS, strict=True):
        cv2.circle(frame, tuple(int(v) for v in point.round()), 4, colour, -1, cv2.LINE_AA)
    detector = DotsDetector(points)
    image, record = crop_frame(frame, detector, CropSettings(size=128, scale=1.3))
    assert image.shape == (128, 128, 3) and record["face"]
    eyes = np.array([dot_centre(image, c) for c in COLOURS[:2]])
    expected = template(128, 1.3)
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1.0  # level, whatever the turn
    assert np.abs(eyes - expected[:2]).max() < 1.5  # 0.5 px rounding of the drawn dots
    assert np.abs(dot_centre(image, COLOURS[2]) - expected[2]).max() < 1.5
    assert np.allclose(record["keypoints"], points.round(1))
    assert inside(points, record["box"])  # the frame region the turned crop covers
    assert record["box"] == footprint(similarity(points, template(128, 1.3)), 128)


def test_box_detectors_keep_their_square_crops():
    frame = np.zeros((100, 100, 3), np.uint8)
    _, record = crop_frame(frame, lambda image: np.array([[40, 40, 20, 20]]), CropSettings())
    assert record == {"box": (37, 37, 63, 63), "face": True}  # 1.3 x 20 = 26, centred


def test_a_video_prepared_with_haar_is_prepared_again_with_another_detector(tmp_path, monkeypatch):
    monkeypatch.setitem(DETECTORS._entries, "dots", lambda: DotsDetector(template(24, 1.0) + 8))
    monkeypatch.setattr(preprocess, "_detectors", {})
    jobs = [VideoJob(clip(tmp_path / "v.mp4", size=(40, 40)), "v", 0, "train")]
    first = prepare(jobs, tmp_path / "o", "d", CropSettings(frames=2, size=16, detector="haar"), 1)
    again = prepare(jobs, tmp_path / "o", "d", CropSettings(frames=2, size=16, detector="dots"), 1)
    assert (first.done, again.done, again.skipped, again.no_face) == (1, 1, 0, 0)
    marker = (tmp_path / "o/d/v/frames.json").read_text()
    assert '"detector": "dots"' in marker and '"keypoints"' in marker


def test_dlib_without_the_extra_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` raises ImportError
    monkeypatch.setattr(preprocess, "_detectors", {})
    clip(tmp_path / "raw/train/real/a.mp4")
    raw, out = str(tmp_path / "raw"), str(tmp_path / "out")
    code = main(["data", "prepare", "folder", "--root", raw, "--out", out, "--detector", "dlib"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --detector dlib needs the optional extra: pip install 'kdbench[align]'"
    with pytest.raises(ConfigError, match=r"kdbench\[align\]"):
        DETECTORS.get("dlib")()


def dlib_detector():
    # found, not imported: face_recognition_models' __init__ needs pkg_resources (see detectors)
    if not all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition_models")):
        pytest.skip("the optional extra kdbench[align] is not installed")
    return DETECTORS.get("dlib")()


def test_dlib_finds_a_real_face_and_its_landmarks_land_on_the_eyes():
    detector = dlib_detector()
    frame = cv2.imread(GRACE_HOPPER)
    faces = detector(frame)
    assert len(faces) == 1
    x, y, w, h = faces[0]
    assert inside(HOPPER_EYES, (x, y, x + w, y + h))
    eyes = detector.keypoints(frame, faces[0])[:2]
    assert np.abs(eyes - HOPPER_EYES).max() < 8  # eyes are 82 px apart


def test_dlib_aligns_a_turned_real_face_level():
    detector = dlib_detector()
    frame = cv2.imread(GRACE_HOPPER)
    centre = tuple(float(v) for v in HOPPER_EYES.mean(axis=0))
    turned = cv2.warpAffine(frame, cv2.getRotationMatrix2D(centre, 25, 1.0), frame.shape[1::-1])
    image, record = crop_frame(turned, detector, CropSettings(size=128))
    assert record["face"]
    eyes = detector.keypoints(image, detector(image)[0])[:2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 4  # level again (turned by 25 degrees: 35 px apart)
    assert np.abs(eyes - template(128, 1.3)[:2]).max() < 6
