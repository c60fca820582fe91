"""Celeb-DF v2: layouts with and without videos/, the test list (1 = real), cross-dataset tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from video_trees import SETTINGS, clip, ff_tree, junk

from kdbench.config import ConfigError, build_config
from kdbench.dataset import check_dataset
from kdbench.datasets import celebdf, faceforensics
from kdbench.datasets.celebdf import CelebDF, held_out, read_test_list, video_jobs
from kdbench.datasets.manifest import read_manifest
from kdbench.datasets.preprocess import prepare
from kdbench.train import run, validate

TEST_LIST = """1 Celeb-real/id0_0000.mp4
0 Celeb-synthesis/id0_id1_0000.mp4
1 YouTube-real/00000.mp4
0 Celeb-synthesis/id9_id8_0000.mp4
"""
VIDEOS = [  # relative to the root; Celeb-real and -synthesis with videos/, YouTube-real without
    "Celeb-real/videos/id0_0000",
    "Celeb-real/videos/id1_0000",
    "Celeb-real/videos/id2_0000",
    "YouTube-real/00000",
    "YouTube-real/00001",
    "Celeb-synthesis/videos/id0_id1_0000",
    "Celeb-synthesis/videos/id1_id0_0000",
    "Celeb-synthesis/videos/id2_id0_0000",
]
ONE_FRAME = "Celeb-real/videos/id1_0000"


def celebdf_tree(root: Path) -> Path:
    for video in VIDEOS:
        clip(root / f"{video}.mp4", frames=1 if video == ONE_FRAME else 3)
    junk(root / "Celeb-synthesis/videos/id3_id0_0000.mp4")
    (root / celebdf.TEST_LIST).write_text(TEST_LIST)
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = celebdf_tree(tmp_path_factory.mktemp("celebdf"))
    out = tmp_path_factory.mktemp("crops")
    jobs, missing = video_jobs(root)
    summary = prepare(jobs, out, "celebdf", SETTINGS, workers=1)
    return root, out, missing, summary


def test_the_test_split_is_the_list_and_its_labels_read_1_as_real(prepared):
    _, out, missing, summary = prepared
    table = read_manifest(out / "celebdf" / "manifest.csv")
    test = table[table["split"] == "test"]
    labels = dict(zip(test["video"], test["label"], strict=True))
    assert labels == {
        "Celeb-real/videos/id0_0000": 0,
        "YouTube-real/00000": 0,
        "Celeb-synthesis/videos/id0_id1_0000": 1,
    }
    assert missing == ["Celeb-synthesis/id9_id8_0000"]  # listed, not on disk
    others = table[table["split"] != "test"]
    assert set(others["video"]) == set(VIDEOS) - set(labels)
    assert all(
        row.split == held_out(row.video.replace("/videos", "")) for row in others.itertuples()
    )
    fake = table["video"].str.startswith("Celeb-synthesis/")
    assert (table["label"] == fake.astype(int)).all()
    assert set(table.loc[fake, "manipulation"]) == {"Celeb-synthesis"}
    assert [video for video, _ in summary.failed] == ["Celeb-synthesis/videos/id3_id0_0000"]


def test_one_frame_videos_give_one_crop(prepared):
    _, out, _, _ = prepared
    table = read_manifest(out / "celebdf" / "manifest.csv")
    counts = table.groupby("video").size()
    assert counts[ONE_FRAME] == 1
    assert counts["Celeb-real/videos/id2_0000"] == 3


def test_dataset_reads_the_test_split(prepared):
    _, out, _, _ = prepared
    test = CelebDF("test", root=str(out), size=8)
    assert len(test) == 3 * 3 and test.num_classes == 2
    assert test[0]["image"].shape == (3, 8, 8)
    assert sorted(test.labels.tolist()) == [0] * 6 + [1] * 3


def test_a_tenth_of_the_unlisted_videos_is_validation():
    names = [f"Celeb-real/id{i}_{j:04d}" for i in range(60) for j in range(50)]
    share = sum(held_out(name) == "val" for name in names) / len(names)
    assert 0.08 < share < 0.12
    assert held_out("Celeb-real/id0_0001") == held_out("Celeb-real/id0_0001")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 Celeb-real/id0_0000.mp4", r"Celeb-real/id0_0000\.mp4 is labelled 0 \(1 = real\)"),
        ("1 Celeb-fake/id0_0000.mp4", "unknown folder 'Celeb-fake'"),
        ("real Celeb-real/id0_0000.mp4", "expected '<1 real | 0 fake> <folder>/<file>.mp4'"),
    ],
)
def test_a_bad_test_list_line_is_named(tmp_path, line, message):
    (tmp_path / "list.txt").write_text(f"1 YouTube-real/00000.mp4\n{line}\n")
    with pytest.raises(ConfigError, match=f"list.txt:2: .*{message}"):
        read_test_list(tmp_path / "list.txt")


@pytest.mark.slow
def test_train_on_ff_test_on_celebdf_in_one_config(prepared, tmp_path):
    _, celebdf_out, _, _ = prepared
    ff_out = tmp_path / "ff-crops"
    prepare(faceforensics.video_jobs(ff_tree(tmp_path / "ff"))[0], ff_out, "ff++", SETTINGS, 1)
    cfg = build_config(
        {
            "student": {"name": "resnet10t"},
            "data": {
                "name": "ff++",
                "params": {"root": str(ff_out), "manipulations": ["Deepfakes", "Face2Face"]},
                "batch_size": 8,
                "test": {"name": "celebdf", "params": {"root": str(celebdf_out)}},
            },
            "train": {"epochs": 1},
        }
    )
    record = run(cfg, tmp_path / "results")
    assert record["status"] == "done"
    assert record["dataset"]["test_size"] == 3 * 3  # Celeb-DF's listed videos on disk
    assert record["dataset"]["val_size"] == 6 * 3  # FF++ val: 2 originals, 4 fakes
    assert record["config"]["data"]["test"]["name"] == "celebdf"
    assert record["config"]["data"]["test"]["params"]["root"] == str(celebdf_out)
    assert json.loads((tmp_path / "results" / "runs" / f"{cfg.run_id()}.json").read_text())


def test_a_test_dataset_changes_the_run_id_and_ids_are_stable_across_processes():
    same = {"data": {"name": "ff++"}}
    cross = {"data": {"name": "ff++", "test": {"name": "celebdf"}}}
    assert build_config(cross).run_id() != build_config(same).run_id()
    code = (
        "from kdbench.config import build_config; "
        "print(build_config({'data': {'name': 'ff++'}}).run_id())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.stdout.strip() == build_config(same).run_id()


def test_the_test_dataset_parameters_are_validated_before_training():
    cfg = build_config(
        {"data": {"name": "ff++", "test": {"name": "celebdf", "params": {"rot": "x"}}}}
    )
    with pytest.raises(
        ConfigError, match="dataset 'celebdf': unknown parameter 'rot'; did you mean 'root'"
    ):
        validate(cfg)


def test_celebdf_keeps_the_dataset_contract(prepared):
    _, out, _, _ = prepared
    for split in ("train", "test"):
        check_dataset(CelebDF(split, root=str(out), size=8), f"celebdf ({split})")
