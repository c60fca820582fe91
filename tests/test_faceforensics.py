"""FaceForensics++: the real layout and official splits on a tiny tree of real mp4 files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from video_trees import CORRUPT, FAKES, PAIRS, SETTINGS, ff_tree

from kdbench.cli import main
from kdbench.config import ConfigError
from kdbench.dataset import check_dataset
from kdbench.datasets import faceforensics
from kdbench.datasets.faceforensics import FaceForensics, read_splits, video_jobs
from kdbench.datasets.manifest import read_manifest
from kdbench.datasets.preprocess import prepare
from kdbench.train.evaluate import classification_metrics


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = ff_tree(tmp_path_factory.mktemp("ffpp"))
    out = tmp_path_factory.mktemp("crops")
    jobs, unsplit = video_jobs(root)
    summary = prepare(jobs, out, "ff++", SETTINGS, workers=1)
    return root, out, jobs, unsplit, summary


def expected_videos(split: str) -> set[str]:
    ids = set()
    for a, b in PAIRS[split]:
        ids |= {f"original_sequences/youtube/c23/videos/{v}" for v in (a, b)}
        for fake in FAKES:
            ids |= {
                f"manipulated_sequences/{fake}/c23/videos/{v}" for v in (f"{a}_{b}", f"{b}_{a}")
            }
    return ids - {CORRUPT}


def test_every_split_owns_its_originals_and_their_fakes(prepared):
    _, out, _, unsplit, _ = prepared
    table = read_manifest(out / "ff++" / "manifest.csv")
    for split in PAIRS:
        assert set(table.loc[table["split"] == split, "video"]) == expected_videos(split)
    assert unsplit == 2  # actors and DeepFakeDetection: no official split owns them


def test_labels_manipulations_and_crops_match_the_manifest(prepared):
    _, out, _, _, _ = prepared
    table = read_manifest(out / "ff++" / "manifest.csv")
    assert len(table) == (8 + 16 - 1) * 3
    is_fake = table["video"].str.startswith("manipulated_sequences/")
    assert (table["label"] == is_fake.astype(int)).all()
    assert set(table.loc[is_fake, "manipulation"]) == set(FAKES)
    assert set(table.loc[~is_fake, "manipulation"]) == {""}
    assert set(table["compression"]) == {"c23"} and list(table["frame"][:3]) == [0, 1, 2]
    for row in table.itertuples():
        assert row.path == f"{row.video}/{row.frame:04d}.png"
        assert cv2.imread(str(out / "ff++" / row.path)).shape == (16, 16, 3)
    assert sorted((out / "ff++").rglob("*.png")) == sorted(out / "ff++" / p for p in table["path"])


def test_a_corrupt_video_is_reported_and_skipped_and_a_second_prepare_does_no_work(prepared):
    root, out, jobs, _, summary = prepared
    assert (summary.done, summary.skipped) == (len(jobs) - 1, 0)
    assert summary.failed == [(CORRUPT, "cannot open it (not a video, or corrupt)")]
    stamps = {p: p.stat().st_mtime_ns for p in (out / "ff++").rglob("*.png")}
    again = prepare(video_jobs(root)[0], out, "ff++", SETTINGS, workers=1)
    assert (again.done, again.skipped, again.frames) == (0, len(jobs) - 1, 0)
    assert {p: p.stat().st_mtime_ns for p in (out / "ff++").rglob("*.png")} == stamps


def test_dataset_items_and_fake_balancing(prepared):
    _, out, _, _, _ = prepared
    common = {"root": str(out), "manipulations": list(FAKES)}
    plain = FaceForensics("train", fakes="all", **common)
    assert len(plain) == (4 + 8) * 3 and plain.num_classes == 2
    item = plain[0]
    assert item["label"].dtype == torch.int64 and item["image"].dtype == torch.float32
    assert item["video"] == "manipulated_sequences/Deepfakes/c23/videos/000_001"
    weighted = FaceForensics("train", fakes="weighted", **common)
    assert np.bincount(weighted.labels).tolist() == [2 * 4 * 3, 8 * 3]  # each real twice
    balanced = FaceForensics("train", fakes="balanced", **common)
    assert np.bincount(balanced.labels).tolist() == [4 * 3, 8 * 2]  # round(3 / 2) per fake
    only = FaceForensics("test", root=str(out), manipulations=["Deepfakes"], frames=1)
    assert sorted(only.videos) == sorted(v for v in expected_videos("test") if "Face2Face" not in v)


def test_same_named_fakes_of_two_manipulations_are_two_videos(prepared):
    _, out, _, _, _ = prepared
    test = FaceForensics("val", root=str(out), manipulations=list(FAKES), frames=1)
    videos = list(test.videos)
    deepfakes = videos.index("manipulated_sequences/Deepfakes/c23/videos/004_005")
    face2face = videos.index("manipulated_sequences/Face2Face/c23/videos/004_005")
    probs = np.full((len(videos), 2), 0.5)
    probs[:, 1] = np.where(test.labels == 1, 0.9, 0.1)  # every video right ...
    probs[face2face] = [0.8, 0.2]  # ... but Face2Face's 004_005, called real
    metrics = classification_metrics(probs, test.labels, videos)
    assert deepfakes != face2face
    # 6 videos, 5 right; merged by file name, 004_005 (mean 0.55) would be right: 4 of 4
    assert metrics["video_acc"] == pytest.approx(5 / 6)


def test_split_files_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.json not found.*ondyari/FaceForensics"):
        read_splits(tmp_path)
    for split in PAIRS:
        (tmp_path / f"{split}.json").write_text('[["000", "001"]]')
    with pytest.raises(ConfigError, match="'000' is in both train and val"):
        read_splits(tmp_path)
    (tmp_path / "train.json").write_text('[["000", "001", "002"]]')
    with pytest.raises(ConfigError, match=r"expected a list of \[id, id\] pairs"):
        read_splits(tmp_path)


def test_names_that_are_not_on_disk_get_did_you_mean(prepared):
    root, out, _, _, _ = prepared
    with pytest.raises(ConfigError, match="did you mean 'Deepfakes'"):
        video_jobs(root, manipulations=["Deepfake"])
    with pytest.raises(ConfigError, match=r"unknown FF\+\+ compression on disk 'c40'"):
        video_jobs(root, compressions=["c40"])
    with pytest.raises(ConfigError, match="did you mean 'Face2Face'"):
        FaceForensics("train", root=str(out), manipulations=["Face2face"])
    with pytest.raises(ConfigError, match=r"no prepared FF\+\+ c40 originals"):
        FaceForensics("train", root=str(out), compression="c40")
    with pytest.raises(ConfigError, match=r"run `kdbench data prepare ff\+\+ --root"):
        FaceForensics("train", root=str(root))


def test_raw_and_c0_are_one_compression():
    table = pd.DataFrame(
        [("original_sequences/youtube/raw/videos/000", "", "raw"),
         ("manipulated_sequences/Deepfakes/c0/videos/000_001", "Deepfakes", "c0"),
         ("manipulated_sequences/Deepfakes/c23/videos/000_001", "Deepfakes", "c23")],
        columns=["video", "manipulation", "compression"],
    )  # fmt: skip
    chosen = faceforensics.select(table, "c0", ["Deepfakes"])
    assert list(chosen["compression"]) == ["raw", "c0"]


@pytest.mark.slow
def test_kdbench_run_trains_on_prepared_synthff_videos(tmp_path):
    synth, crops, results = tmp_path / "synth", tmp_path / "crops", tmp_path / "results"
    assert main(["data", "synth", "--out", str(synth), "--videos", "40", "--frames", "3",
                 "--size", "64", "--qualities", "hq"]) == 0  # fmt: skip
    assert main(["data", "prepare", "ff++", "--root", str(synth), "--out", str(crops),
                 "--frames", "3", "--size", "32", "--workers", "2"]) == 0  # fmt: skip
    config = {
        "student": {"name": "resnet10t"},
        "data": {
            "name": "ff++",
            "params": {"root": str(crops), "manipulations": ["spatial", "frequency", "both"]},
            "batch_size": 16,
        },
        "train": {"epochs": 1},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "run.yaml"), "--results", str(results)]) == 0
    [record] = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    table = read_manifest(crops / "ff++" / "manifest.csv")
    sizes = table["split"].value_counts()
    real_train = ((table["split"] == "train") & (table["label"] == 0)).sum()
    assert record["status"] == "done"
    assert record["dataset"]["train_size"] == sizes["train"] + 2 * real_train  # weighted: 3x
    assert (record["dataset"]["val_size"], record["dataset"]["test_size"]) == (
        sizes["val"],
        sizes["test"],
    )
    assert record["dataset"]["image_shape"] == [3, 32, 32]
    assert {"acc", "auc", "video_acc", "video_auc"} <= set(record["best"]["test"])


def test_ff_keeps_the_dataset_contract(prepared):
    _, out, _, _, _ = prepared
    for split in ("train", "val", "test"):
        dataset = FaceForensics(split, root=str(out), manipulations=list(FAKES))
        check_dataset(dataset, f"ff++ ({split})")
