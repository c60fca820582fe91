"""CIFAR-100 from torchvision's pickle folder, the CIFAR networks and the RepDistiller preset."""

from __future__ import annotations

import os
import pickle
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from kdbench.config import ConfigError, build_config
from kdbench.dataset import check_dataset
from kdbench.datasets.cifar import CIFAR100, MEAN, STD
from kdbench.method import build_method
from kdbench.models import build_model
from kdbench.registry import METHODS, MODELS
from kdbench.sweep.plan import expand
from kdbench.sweep.spec import load_spec
from kdbench.train import run, validate
from kdbench.train.setup import network_context, request_preact


def write_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    """A CIFAR python file as torchvision finds it: a pickled dict of data and fine labels."""
    data = {
        "data": images.reshape(len(images), -1),
        "fine_labels": labels,
        "coarse_labels": [0] * len(labels),
        "filenames": [f"{i}.png" for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(data))


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    """2 train images per class (image k filled with value k), 1 test image per class."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "cifar-100-python"
    folder.mkdir()
    train = np.repeat(np.arange(200, dtype=np.uint8)[:, None], 3 * 32 * 32, axis=1)
    write_batch(folder / "train", train, [k % 100 for k in range(200)])
    write_batch(folder / "test", train[:100], list(range(100)))
    meta = {"fine_label_names": [f"class{i}" for i in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return root


def test_images_labels_and_normalisation(cifar_root):
    train = CIFAR100("train", root=str(cifar_root), augment=False)
    assert len(train) == 200 and train.num_classes == 100
    item = train[7]
    assert item["image"].shape == (3, 32, 32) and item["label"] == 7
    assert set(item) == {"image", "label", "index"}  # no invented "video" key (contract: optional)
    expected = (7 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(item["image"][:, 5, 5], expected)
    assert train.classes[3] == "class3"
    # the root may also be the cifar-100-python folder itself
    test = CIFAR100("test", root=str(cifar_root / "cifar-100-python"))
    assert len(test) == 100 and test[0]["image"].shape == (3, 32, 32)


def test_augmentation_is_a_zero_padded_random_crop_and_a_flip(cifar_root):
    train = CIFAR100("train", root=str(cifar_root))
    train.images = (torch.arange(3 * 32 * 32).view(1, 3, 32, 32) % 251).to(torch.uint8)
    train.labels = np.array([0])
    padded = F.pad(train.images[0].float(), (4, 4, 4, 4))
    candidates = {}
    for top in range(9):
        for left in range(9):
            window = padded[:, top : top + 32, left : left + 32]
            candidates[(top, left, False)] = window
            candidates[(top, left, True)] = window.flip(-1)
    torch.manual_seed(0)
    seen = set()
    for _ in range(300):
        pixels = train[0]["image"] * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(
            3, 1, 1
        )
        pixels = (pixels * 255).round()
        match = [key for key, window in candidates.items() if torch.equal(window, pixels)]
        assert len(match) >= 1
        seen.add(match[0])
    assert len({(t, left) for t, left, _ in seen}) > 40  # many of the 81 offsets
    assert {flip for _, _, flip in seen} == {False, True}


def test_val_is_the_test_set_or_a_class_balanced_hold_out(cifar_root):
    root = str(cifar_root)
    assert torch.equal(CIFAR100("val", root=root).images, CIFAR100("test", root=root).images)
    val = CIFAR100("val", root=root, val_size=100, seed=3)
    train = CIFAR100("train", root=root, val_size=100, seed=3)
    assert sorted(val.labels.tolist()) == list(range(100))
    assert len(train) == 100 and sorted(train.labels.tolist()) == list(range(100))
    held = {int(v) for v in val.images[:, 0, 0, 0]}
    assert held.isdisjoint(int(v) for v in train.images[:, 0, 0, 0])
    again = CIFAR100("val", root=root, val_size=100, seed=3)
    assert torch.equal(again.images, val.images)
    with pytest.raises(ConfigError, match="multiple of 100"):
        CIFAR100("val", root=root, val_size=150)


def test_bad_files_are_refused_with_a_reason(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"train not found: expected torchvision's CIFAR-100"):
        CIFAR100("train", root=str(tmp_path))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    (folder / "train").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(ConfigError, match=r"refusing to load posix\.system"):
        CIFAR100("train", root=str(tmp_path))
    write_batch(folder / "train", np.zeros((2, 100), np.uint8), [0, 1])
    with pytest.raises(ConfigError, match=r"'data' should be uint8 \[N, 3072\]"):
        CIFAR100("train", root=str(tmp_path))
    write_batch(folder / "train", np.zeros((2, 3072), np.uint8), [0, 100])
    with pytest.raises(ConfigError, match=r"2 labels in 0\.\.99"):
        CIFAR100("train", root=str(tmp_path))


def params(name: str) -> int:
    return sum(p.numel() for p in build_model(name, 100).parameters())


def test_parameter_counts_match_the_published_ones():
    # RepDistiller / CRD (Tian et al. 2020), 100 classes, in millions
    published = {"cifar_resnet8x4": 1.23, "cifar_resnet32x4": 7.43, "cifar_wrn_40_2": 2.26,
                 "cifar_wrn_16_2": 0.70, "cifar_wrn_40_1": 0.57, "cifar_resnet56": 0.86,
                 "cifar_resnet110": 1.74, "cifar_resnet20": 0.28, "cifar_resnet32": 0.47,
                 "cifar_vgg13": 9.46}  # fmt: skip
    for name, millions in published.items():
        assert round(params(name) / 1e6, 2) == millions, name
    # by hand: stem 3·32·9 + 64; blocks 32→64, 64→128, 128→256 (two 3×3 convs, a 1×1
    # shortcut, three BNs each); fc 256·100 + 100
    stem = 3 * 32 * 9 + 2 * 32
    blocks = sum(
        9 * a * b + 9 * b * b + a * b + 6 * b for a, b in ((32, 64), (64, 128), (128, 256))
    )
    assert params("cifar_resnet8x4") == stem + blocks + 256 * 100 + 100 == 1_233_540
    # vgg8: five conv3×3 (with bias) + BN stages 3→64→128→256→512→512, fc 512·100 + 100
    widths = (3, 64, 128, 256, 512, 512)
    vgg8 = sum(9 * a * b + b + 2 * b for a, b in pairwise(widths)) + 512 * 100 + 100
    assert params("cifar_vgg8") == vgg8 == 3_965_028


def test_stage_features_follow_repdistiller():
    x = torch.randn(2, 3, 32, 32)
    out = build_model("cifar_resnet8x4", 100).eval()(x)
    shapes = {k: tuple(v.shape[1:]) for k, v in out.features.items()}
    assert shapes == {"stage1": (32, 32, 32), "stage2": (64, 32, 32), "stage3": (128, 16, 16),
                      "stage4": (256, 8, 8), "pooled": (256,)}  # fmt: skip
    model = build_model("cifar_wrn_16_2", 10).eval()
    out = model(x)
    assert torch.allclose(out.logits, model.fc(out.features["pooled"]))
    stages = {k: tuple(v.shape[1:]) for k, v in build_model("cifar_vgg8", 100)(x).features.items()}
    assert stages["stage4"] == stages["stage5"] == (512, 4, 4)  # no pool before the fifth stage


def test_no_cifar_model_shadows_a_timm_model():
    names = MODELS.names("cifar_*")
    assert len(names) == 9 + 8 + 5
    assert not [name for name in names if timm.is_model(name)]


def test_the_repdistiller_preset_expands_to_its_pairs_and_every_method_builds():
    """Its 7 pairs with vanilla, KD, FitNets, AT and CRD (6 vanilla students: resnet20 twice),
    and every other method on resnet32x4 -> resnet8x4; each builds on the CIFAR networks and
    gives finite losses (pre-activation features and classifier heads where a method asks)."""
    plan = expand(load_spec(preset="cifar100-repdistiller"))
    others = {c.method.name for c in plan.students if c.student.name == "cifar_resnet8x4"}
    assert others >= {"dkd", "dist", "ls-kd", "rkd", "pkt", "sp", "vid", "nst", "ofd"}
    assert len(plan.teachers) == 5 and len(plan.students) == 7 * 4 + 6 + 13
    t = plan.students[0].train
    assert (t.epochs, t.optimizer, t.lr, t.weight_decay, t.milestones, t.gamma) == (
        240, "sgd", 0.05, 5e-4, [150, 180, 210], 0.1,
    )  # fmt: skip
    assert plan.students[0].data.batch_size == 64
    x = torch.randn(2, 3, 32, 32)
    labels = torch.arange(50_000) % 100
    for cfg in plan.students:
        validate(cfg)
        if cfg.teacher is None:
            continue
        student, teacher = build_model(cfg.student.name, 100), build_model(cfg.teacher.name, 100)
        if METHODS.get(cfg.method.name).needs_preact:
            request_preact(cfg.method.name, student, teacher)
        with torch.no_grad():
            s_out, t_out = student.eval()(x), teacher.eval()(x)
        ctx = network_context(student, teacher, s_out, t_out, 100, FakeTrainSet(labels))
        method = build_method(cfg.method.name, ctx, cfg.method.params)
        batch = {"label": torch.tensor([1, 2]), "index": torch.tensor([0, 1])}
        losses = method.losses(batch, s_out, t_out)
        assert all(torch.isfinite(v) for v in losses.values()), cfg.method.name


class FakeTrainSet:
    """What ``network_context`` reads of a training split: its size and labels."""

    def __init__(self, labels: torch.Tensor) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)


@pytest.mark.slow
def test_a_cifar_run_trains_and_reports_top5(cifar_root, tmp_path):
    cfg = build_config(
        {
            "student": {"name": "cifar_resnet8"},
            "data": {"name": "cifar100", "params": {"root": str(cifar_root)}, "batch_size": 64},
            "train": {"epochs": 1, "optimizer": "sgd", "lr": 0.05, "select": "acc"},
        }
    )
    record = run(cfg, tmp_path)
    assert record["status"] == "done"
    assert set(record["best"]["test"]) == {"acc", "top5"}
    assert record["dataset"]["num_classes"] == 100 and record["dataset"]["test_size"] == 100
    assert record["cost"]["student"]["params"] == params("cifar_resnet8")


def test_cifar100_keeps_the_dataset_contract(cifar_root):
    for split in ("train", "val", "test"):
        check_dataset(CIFAR100(split, root=str(cifar_root)), f"cifar100 ({split})")
