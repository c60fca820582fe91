"""Folder datasets: real/fake image trees, and video trees prepared into them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from video_trees import clip

from kdbench.cli import main
from kdbench.config import ConfigError
from kdbench.dataset import IMAGENET_MEAN, IMAGENET_STD, check_dataset
from kdbench.datasets.folder import FolderDataset
from kdbench.datasets.manifest import read_manifest


def image(path: Path, value: int, size: tuple[int, int] = (10, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


@pytest.fixture
def tree(tmp_path) -> Path:
    for i in range(3):
        image(tmp_path / f"train/real/alice/{i:02d}.png", 10 * i)
        image(tmp_path / f"train/fake/swap/bob/{i:02d}.jpg", 100, size=(20, 24))
    image(tmp_path / "train/real/single.png", 50)  # its video: the class folder itself
    (tmp_path / "train/real/notes.txt").write_text("not an image")
    for split in ("val", "test"):
        image(tmp_path / f"{split}/real/a/0.png", 0)
        image(tmp_path / f"{split}/fake/b/0.png", 255)
    return tmp_path


def test_labels_and_videos_come_from_the_folders(tree):
    train = FolderDataset("train", root=str(tree), augment=False, size=8)
    assert list(train.videos) == ["train/fake/swap/bob"] * 3 + ["train/real/alice"] * 3 + [
        "train/real"
    ]
    assert train.labels.tolist() == [1, 1, 1, 0, 0, 0, 0]
    item = train[3]  # train/real/alice/00.png: all zeros
    assert item["image"].shape == (3, 8, 8) and item["label"] == 0
    zero = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(item["image"][:, 0, 0], zero)
    assert item["video"] == "train/real/alice"


def test_frames_keeps_that_many_images_per_video(tree):
    train = FolderDataset("train", root=str(tree), frames=1, size=8)
    assert [Path(p).name for p in train.paths] == ["01.jpg", "01.png", "single.png"]


def test_an_empty_or_missing_split_is_a_clear_error(tree):
    (tree / "val/real/a/0.png").unlink()
    (tree / "val/fake/b/0.png").unlink()
    with pytest.raises(ConfigError, match=r"the val split of .* is empty"):
        FolderDataset("val", root=str(tree))
    with pytest.raises(
        ConfigError, match=r"nowhere/train does not exist: expected .*/\{real,fake\}"
    ):
        FolderDataset("train", root=str(tree / "nowhere"))


def test_prepared_videos_form_a_folder_dataset(tmp_path):
    for split in ("train", "val", "test"):
        clip(tmp_path / f"raw/{split}/real/studio/take1.mp4", frames=4)
        clip(tmp_path / f"raw/{split}/fake/gan/take1.mp4", frames=4)
    args = ["data", "prepare", "folder", "--root", str(tmp_path / "raw"),
            "--out", str(tmp_path / "out"), "--frames", "2", "--size", "16",
            "--detector", "test-centre", "--workers", "1"]  # fmt: skip
    assert main(args) == 0
    table = read_manifest(tmp_path / "out/folder/manifest.csv")
    assert sorted(set(table["video"])) == sorted(
        f"{s}/{c}/take1" for s in ("train", "val", "test") for c in ("real/studio", "fake/gan")
    )
    train = FolderDataset("train", root=str(tmp_path / "out"))  # finds out/folder
    assert sorted(train.videos) == ["train/fake/gan/take1"] * 2 + ["train/real/studio/take1"] * 2
    assert train[0]["image"].shape == (3, 16, 16)
    crops = table[table["split"] == "train"].sort_values("path")
    assert list(crops["path"]) == sorted(train.paths)
    assert list(crops["label"]) == sorted(train.labels.tolist(), reverse=True)


def test_ff_only_options_are_refused_for_other_datasets(tmp_path, capsys):
    code = main(["data", "prepare", "celebdf", "--root", str(tmp_path), "--out", str(tmp_path),
                 "--compression", "c23"])  # fmt: skip
    assert code == 2
    assert "--compression: only for ff++, not celebdf" in capsys.readouterr().err


def test_folder_keeps_the_dataset_contract(tree):
    for split in ("train", "val", "test"):
        check_dataset(FolderDataset(split, root=str(tree), size=8), f"folder ({split})")
