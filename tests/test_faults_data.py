"""Data faults found up front: videos none of which can be read, corrupt images in a folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from video_trees import clip

from kdbench.cli import main
from kdbench.config import ConfigError
from kdbench.datasets.folder import FolderDataset


def prepare(root: Path, out: Path) -> int:
    return main(["data", "prepare", "folder", "--root", str(root), "--out", str(out),
                 "--frames", "2", "--size", "16", "--detector", "test-centre",
                 "--workers", "1"])  # fmt: skip


def garbage(path: Path, size: int = 3000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(len(str(path))).bytes(size))
    return path


def test_prepare_with_no_readable_video_fails_in_one_line(tmp_path, capsys):
    for name in ("real/a.mp4", "fake/b.mp4", "fake/c.mp4"):
        garbage(tmp_path / "raw/train" / name)
    assert prepare(tmp_path / "raw", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: folder: nothing was prepared: 3 of 3 videos could not be read")
    assert err.endswith("(first: train/fake/b: cannot open it (not a video, or corrupt))")


def test_prepare_with_some_readable_videos_still_succeeds(tmp_path, capsys):
    clip(tmp_path / "raw/train/real/a.mp4", frames=4)
    garbage(tmp_path / "raw/train/fake/b.mp4")
    assert prepare(tmp_path / "raw", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "1 failed" in err and "failed: train/fake/b: " in err


def image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))
    return path


def test_corrupt_images_are_all_named_when_the_dataset_is_built(tmp_path):
    for i in range(4):
        image(tmp_path / f"train/real/v/{i}.png", 10 * i)
        image(tmp_path / f"train/fake/w/{i}.jpg", 200)
    garbage(tmp_path / "train/real/v/1.png")  # garbage bytes named .png
    truncated = tmp_path / "train/fake/w/2.jpg"
    truncated.write_bytes(truncated.read_bytes()[:20])
    half = tmp_path / "train/real/v/3.png"  # a real PNG cut short
    half.write_bytes(half.read_bytes()[:-30])
    with pytest.raises(ConfigError) as err:
        FolderDataset("train", root=str(tmp_path))
    message = str(err.value)
    assert message.startswith(f"3 of 8 images under {tmp_path}/train cannot be read")
    for path in ("real/v/1.png", "fake/w/2.jpg", "real/v/3.png"):
        assert path in message
    assert "real/v/0.png" not in message


def test_only_the_first_few_corrupt_images_are_listed(tmp_path):
    for i in range(7):
        garbage(tmp_path / f"train/real/v/{i}.png", size=100)
    with pytest.raises(ConfigError, match=r"7 of 7 images .*/v/4\.png and 2 more$"):
        FolderDataset("train", root=str(tmp_path))
