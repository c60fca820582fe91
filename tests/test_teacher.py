"""The teacher side: precision choice, fixed-view sampling, and cached == live outputs."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from kdbench.config import ConfigError
from kdbench.datasets.synthff import SynthFF
from kdbench.models import build_model
from kdbench.sweep.plan import Plan, resolve_teacher
from kdbench.sweep.runner import run_in_process
from kdbench.train import run, validate
from kdbench.train.cache import TeacherCache
from kdbench.train.data import ViewSampler
from kdbench.train.teacher import CachedTeacher, LiveTeacher, cacheable

CPU = torch.device("cpu")
FEATURES = ["spatial.stage2", "frequency.pooled"]


@pytest.fixture(scope="module")
def data():
    return SynthFF("train", videos=8, frames=2, size=32, quality="hq")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("dual-branch", 2, spatial="resnet10t", frequency="resnet10t", image_size=32)
    path = tmp_path_factory.mktemp("teacher") / "model.pt"
    torch.save(model.state_dict(), path)
    return path


def live_teacher(weights: Path, dtype=torch.float32) -> LiveTeacher:
    kwargs = {"spatial": "resnet10t", "frequency": "resnet10t", "image_size": 32}
    model = build_model("dual-branch", 2, str(weights), **kwargs)
    return LiveTeacher(model, FEATURES, CPU, dtype)


def test_view_sampler_is_a_seeded_permutation_with_views():
    sampler = ViewSampler(10, views=2)
    sampler.set_epoch(seed=3, epoch=1)
    first = list(sampler)
    sampler.set_epoch(seed=3, epoch=1)
    assert list(sampler) == first  # a resumed epoch sees the same keys
    assert sorted(i for i, _ in first) == list(range(10))
    assert {v for _, v in first} == {0, 1}
    sampler.set_epoch(seed=3, epoch=2)
    assert list(sampler) != first
    plain = ViewSampler(10, views=None)
    plain.set_epoch(3, 1)
    assert sorted(plain) == list(range(10))


def test_synthff_views_are_the_image_and_its_mirror(data):
    assert data.num_views == 2 and cacheable(data) is None
    assert torch.equal(data[(3, 1)]["image"], data[(3, 0)]["image"].flip(-1))
    assert data[(3, 1)]["view"] == 1 and data[(3, 1)]["index"] == 3
    assert SynthFF("test", videos=8, frames=2, size=32).num_views == 1  # no augmentation


def test_cached_outputs_equal_live_ones_bit_for_bit_in_fp32(data, weights, tmp_path):
    live = live_teacher(weights)
    cache = TeacherCache(tmp_path, weights, data, torch.float32, CPU)
    cached = CachedTeacher(cache.table(live, batch_size=4), data.num_views, CPU)
    batch = default_collate([data[key] for key in [(5, 1), (0, 0), (7, 1), (2, 0), (9, 1)]])
    want, got = live(batch), cached(batch)
    assert torch.equal(got.logits, want.logits)
    assert set(got.features) == set(FEATURES)
    for name in FEATURES:
        assert got.features[name].dtype == torch.float32
        assert torch.equal(got.features[name], want.features[name]), name


def test_bf16_cache_stores_the_bf16_values_exactly(data, weights, tmp_path):
    live = live_teacher(weights, torch.bfloat16)
    cache = TeacherCache(tmp_path, weights, data, torch.bfloat16, CPU)
    table = cache.table(live, batch_size=len(data) * 2)
    keys = [(i, v) for i in range(len(data)) for v in range(2)]
    raw = live.raw(default_collate([data[k] for k in keys])["image"])
    assert table["logits"].dtype == torch.bfloat16
    assert torch.equal(table["logits"], raw["logits"])
    fp32 = live_teacher(weights).raw(default_collate([data[k] for k in keys])["image"])
    assert (raw["logits"].float() - fp32["logits"]).abs().max() < 0.05  # bf16 ≈ fp32


def test_cache_is_reused_and_only_missing_outputs_are_computed(data, weights, tmp_path):
    live = live_teacher(weights)
    cache = TeacherCache(tmp_path, weights, data, torch.float32, CPU)
    cache.table(live, batch_size=8)
    stamp = (cache.folder / "logits.npy").stat().st_mtime_ns
    live.features = [*FEATURES, "spatial.stage1"]
    table = cache.table(live, batch_size=8)
    assert (cache.folder / "logits.npy").stat().st_mtime_ns == stamp
    assert table["spatial.stage1"].shape[0] == len(data) * data.num_views
    calls = []
    live.raw = lambda images: calls.append(images)  # a third call must not run the teacher
    cache.table(live, batch_size=8)
    assert calls == []


def test_cache_key_follows_weights_precision_and_data(data, weights, tmp_path):
    folder = TeacherCache(tmp_path, weights, data, torch.float32, CPU).folder
    assert TeacherCache(tmp_path, weights, data, torch.bfloat16, CPU).folder != folder
    other = SynthFF("train", videos=8, frames=2, size=32, quality="lq")
    assert TeacherCache(tmp_path, weights, other, torch.float32, CPU).folder != folder
    changed = tmp_path / "changed.pt"
    state = torch.load(weights, weights_only=True)
    state["head.bias"] += 1
    torch.save(state, changed)
    assert TeacherCache(tmp_path, changed, data, torch.float32, CPU).folder != folder


@pytest.mark.slow
def test_a_cached_run_trains_exactly_like_a_live_one(tiny, tmp_path):
    plan = Plan()
    cfg = resolve_teacher(tiny("method.name=two-in-one", "teacher.precision=fp32"), plan)
    (teacher,) = run_in_process(plan.runs(), tmp_path / "teacher")
    weights = str(tmp_path / "teacher" / teacher["checkpoint"])
    cfg = replace(cfg, teacher=replace(cfg.teacher, run=None, checkpoint=weights))
    live_cfg = replace(cfg, teacher=replace(cfg.teacher, cache=False))
    assert live_cfg.run_id() == cfg.run_id()  # the cache does not change what a run is
    cached, live = run(cfg, tmp_path / "a"), run(live_cfg, tmp_path / "b")
    assert cached["teacher"]["cache"] is True and cached["teacher"]["precision"] == "float32"
    assert live["teacher"] | {"cache_reason": None} == {
        "cache": False,
        "cache_reason": None,
        "precision": "float32",
        "features": cached["teacher"]["features"],
    }
    assert live["teacher"]["cache_reason"] == "teacher.cache is false"
    for a, b in zip(cached["history"], live["history"], strict=True):
        assert a["train"] == b["train"] and a["test"] == b["test"]


def test_a_run_draws_the_same_numbers_whether_or_not_its_cache_exists(tiny, tmp_path, monkeypatch):
    """Building the teacher cache and measuring the precision must not move the global random
    streams a method draws from while it trains (CRD's negatives): the same id, the same
    result, with an empty cache folder or a full one."""
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / "cache"))
    plan = Plan()
    cfg = resolve_teacher(tiny("method.name=crd", "train.epochs=2"), plan)
    run_in_process(plan.runs(), tmp_path / "r")
    first = run(cfg, tmp_path / "r")  # builds the teacher cache and the precision verdict
    assert first["teacher"]["cache"] is True
    assert first["teacher"]["precision_verdict"]["cached"] is False
    again = run(cfg, tmp_path / "r", rerun=True)  # finds both
    assert again["teacher"]["precision_verdict"]["cached"] is True
    for a, b in zip(first["history"], again["history"], strict=True):
        assert a["train"] == b["train"] and a["val"] == b["val"]


def test_validate_rejects_an_unknown_precision_before_training(tiny):
    with pytest.raises(ConfigError, match="did you mean 'fp32'"):
        validate(tiny("method.name=kd", "teacher.precision=fp23"))
