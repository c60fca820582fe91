"""Video → face-crop preprocessing: frame sampling, boxes, decoding errors, detectors, resuming."""

from __future__ import annotations

import numpy as np
import pytest
from video_trees import clip, junk

from kdbench.config import ConfigError
from kdbench.datasets import preprocess
from kdbench.datasets.detectors import HaarDetector
from kdbench.datasets.faces import crop_frame, square_box
from kdbench.datasets.manifest import read_manifest
from kdbench.datasets.preprocess import (
    CropSettings,
    VideoError,
    VideoJob,
    prepare,
    read_frames,
    sample_indices,
)
from kdbench.datasets.synthff import SynthFFSpec, generate
from kdbench.registry import DETECTORS, UnknownNameError


@pytest.mark.parametrize(
    ("total", "count", "expected"),
    [
        (10, 4, [1, 3, 6, 8]),  # middles of [0, 2.5), [2.5, 5), [5, 7.5), [7.5, 10)
        (300, 3, [50, 150, 250]),
        (3, 32, [0, 1, 2]),  # fewer frames than asked: all of them
        (1, 32, [0]),
    ],
)
def test_frames_are_sampled_from_the_middle_of_equal_segments(total, count, expected):
    assert sample_indices(total, count) == expected


def test_square_box_is_centred_shifted_into_the_frame_and_shrunk_to_fit():
    assert square_box(50, 40, 20, 100, 80) == (40, 30, 60, 50)
    assert square_box(5, 40, 20, 100, 80) == (0, 30, 20, 50)  # shifted right, not cut
    assert square_box(98, 78, 20, 100, 80) == (80, 60, 100, 80)
    assert square_box(50, 40, 200, 100, 80) == (10, 0, 90, 80)  # as large as the frame allows


def test_face_box_takes_the_largest_face_found_on_a_shrunk_frame():
    frame = np.zeros((720, 1280, 3), np.uint8)
    seen = []

    def detect(image):
        seen.append(image.shape)
        return np.array([[10, 10, 20, 20], [100, 50, 40, 40]])

    image, record = crop_frame(frame, detect, CropSettings(size=32, detect_side=640))
    assert seen == [(360, 640, 3)]
    # largest face (100, 50, 40, 40) at half scale -> (200, 100, 80, 80) in the frame;
    # centre (240, 140), side 1.3 * 80 = 104
    assert record == {"box": (188, 88, 292, 192), "face": True}
    assert image.shape == (32, 32, 3)


def test_without_a_face_the_box_is_the_centred_square():
    frame = np.zeros((60, 100, 3), np.uint8)
    _, record = crop_frame(frame, lambda image: np.zeros((0, 4)), CropSettings())
    assert record == {"box": (20, 0, 80, 60), "face": False}


def test_read_frames_decodes_the_sampled_frames(tmp_path):
    path = clip(tmp_path / "a.mp4", frames=10)
    frames = list(read_frames(path, 4))
    assert [i for i, _ in frames] == [1, 3, 6, 8]
    for index, image in frames:
        assert image.shape == (48, 64, 3)
        assert abs(image.mean() - (40 + 20 * index)) < 10  # lossy mp4v; neighbours differ by 20


def test_unreadable_and_truncated_videos_raise_video_error(tmp_path):
    with pytest.raises(VideoError, match="cannot open"):
        list(read_frames(junk(tmp_path / "junk.mp4"), 4))
    whole = clip(tmp_path / "whole.mp4", frames=10).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(VideoError):
        list(read_frames(tmp_path / "cut.mp4", 4))


def test_haar_finds_the_synthff_faces_where_they_are():
    corpus = generate(SynthFFSpec(videos=20, frames=2, size=128, quality="hq"))
    detect = HaarDetector()
    found = 0
    for image, landmarks in zip(corpus.images, corpus.landmarks, strict=True):
        faces = detect(np.ascontiguousarray(image[..., ::-1]))
        if len(faces) == 0:
            continue
        found += 1
        x, y, w, h = faces[np.argmax(faces[:, 2] * faces[:, 3])]
        eyes_nose_mouth = landmarks[:5]  # inside the detected box
        assert np.all(eyes_nose_mouth >= [x, y]) and np.all(eyes_nose_mouth <= [x + w, y + h])
    assert found / len(corpus.images) >= 0.6


def jobs_for(tmp_path, videos: dict[str, object]) -> list[VideoJob]:
    return [VideoJob(path, name, label=i % 2, split="train") for i, (name, path) in
            enumerate(videos.items())]  # fmt: skip


def test_prepare_crops_counts_and_skips_what_is_done(tmp_path):
    videos = {
        "a/one": clip(tmp_path / "raw/one.mp4", frames=4, dark=2),
        "a/two": clip(tmp_path / "raw/two.mp4", frames=2),
        "b/bad": junk(tmp_path / "raw/bad.mp4"),
    }
    settings = CropSettings(frames=3, size=16, detector="test-centre")
    out = tmp_path / "out"
    summary = prepare(jobs_for(tmp_path, videos), out, "mine", settings, workers=1)
    assert (summary.done, summary.skipped, summary.frames) == (2, 0, 5)
    assert summary.no_face == 1  # frame 2 of "one" is black
    assert summary.failed == [("b/bad", "cannot open it (not a video, or corrupt)")]
    table = read_manifest(out / "mine" / "manifest.csv")
    assert list(table["video"]) == ["a/one"] * 3 + ["a/two"] * 2
    assert list(table["frame"]) == [0, 2, 3, 0, 1]  # sample_indices(4, 3), (2, 3)
    assert list(table["face"]) == [1, 0, 1, 1, 1]
    # the centred half box (16, 12, 32, 24) enlarged 1.3x -> side 42 around (32, 24)
    assert table["box"][0] == "11 3 53 45" and table["box"][1] == "8 0 56 48"
    assert set(table["dataset"]) == {"mine"}

    again = prepare(jobs_for(tmp_path, videos), out, "mine", settings, workers=1)
    assert (again.done, again.skipped, len(again.failed), again.rows) == (0, 2, 1, 5)


def test_other_settings_prepare_again_and_drop_stale_crops(tmp_path):
    videos = {"v": clip(tmp_path / "v.mp4", frames=10)}
    out = tmp_path / "out"
    prepare(
        jobs_for(tmp_path, videos),
        out,
        "d",
        CropSettings(frames=4, size=8, detector="test-centre"),
        1,
    )
    summary = prepare(
        jobs_for(tmp_path, videos),
        out,
        "d",
        CropSettings(frames=2, size=8, detector="test-centre"),
        1,
    )
    assert summary.done == 1
    assert sorted(p.name for p in (out / "d" / "v").glob("*.png")) == ["0002.png", "0007.png"]


def test_the_manifest_keeps_videos_prepared_by_an_earlier_call(tmp_path):
    first = {"c23/x": clip(tmp_path / "x.mp4", frames=2)}
    second = {"c40/x": clip(tmp_path / "y.mp4", frames=2)}
    settings = CropSettings(frames=2, size=8, detector="test-centre")
    prepare(jobs_for(tmp_path, first), tmp_path / "out", "d", settings, 1)
    summary = prepare(jobs_for(tmp_path, second), tmp_path / "out", "d", settings, 1)
    table = read_manifest(tmp_path / "out" / "d" / "manifest.csv")
    assert summary.rows == 4 and sorted(set(table["video"])) == ["c23/x", "c40/x"]


def test_a_failing_detector_plugin_fails_its_videos_not_the_run(tmp_path, monkeypatch):
    class Broken:
        def __call__(self, image):
            raise RuntimeError("model weights missing")

    monkeypatch.setitem(DETECTORS._entries, "broken", Broken)
    monkeypatch.setattr(preprocess, "_detectors", {})
    videos = {"v": clip(tmp_path / "v.mp4")}
    summary = prepare(
        jobs_for(tmp_path, videos), tmp_path / "o", "d", CropSettings(detector="broken"), 1
    )
    assert summary.failed == [("v", "RuntimeError: model weights missing")]
    assert summary.rows == 0


def test_a_detector_that_cannot_be_built_is_one_error_before_any_video(tmp_path, monkeypatch):
    def unbuildable():
        raise RuntimeError("no model file")

    monkeypatch.setitem(DETECTORS._entries, "unbuildable", unbuildable)
    monkeypatch.setattr(preprocess, "_detectors", {})
    videos = {"v": clip(tmp_path / "v.mp4")}
    settings = CropSettings(detector="unbuildable")
    with pytest.raises(ConfigError, match="detector 'unbuildable' cannot be built: RuntimeError"):
        prepare(jobs_for(tmp_path, videos), tmp_path / "o", "d", settings, 1)
    assert not (tmp_path / "o").exists()


def test_unknown_detector_and_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown detector 'har'; did you mean 'haar'"):
        prepare([], tmp_path, "d", CropSettings(detector="har"))
    with pytest.raises(ConfigError, match="frames >= 1"):
        CropSettings(frames=0)


def test_two_videos_with_one_key_are_refused(tmp_path):
    jobs = [VideoJob(tmp_path / "a.mp4", "same", 0, "train"),
            VideoJob(tmp_path / "b.mp4", "same", 1, "train")]  # fmt: skip
    with pytest.raises(ConfigError, match="two videos map to 'same'"):
        prepare(jobs, tmp_path, "d", CropSettings(detector="test-centre"))
