"""Sweep expansion: grid product, teachers as runs, per-method parameters, presets that extend."""

import math

import pytest

from kdbench.config import ConfigError
from kdbench.summary import summary_rows
from kdbench.sweep import expand, load_spec, merge

BASE = {
    "student": {"name": "resnet10t"},
    "teacher": {"name": "resnet18", "train": {"epochs": 3}},
    "train": {"epochs": 2},
}


def test_grid_expands_and_each_distinct_teacher_is_one_run():
    spec = {
        "base": BASE,
        "grid": {"data.params.quality": ["hq", "lq"], "method": ["vanilla", "kd"], "seed": [0, 1]},
    }
    plan = expand(spec)
    assert len(plan.students) == 8
    assert len(plan.teachers) == 2  # one per data config, shared by both seeds
    by_quality = {t.data.params["quality"]: t for t in plan.teachers}
    for cfg in plan.students:
        if cfg.method.name == "vanilla":
            assert cfg.teacher is None
        else:
            teacher = by_quality[cfg.data.params["quality"]]
            assert cfg.teacher.run == teacher.run_id()
    t = plan.teachers[0]
    assert (t.student.name, t.method.name, t.train.epochs, t.seed) == ("resnet18", "vanilla", 3, 0)


def test_method_entries_and_per_method_parameters():
    spec = {
        "base": BASE,
        "grid": {"method": ["kd", {"name": "kd", "params": {"temperature": 2.0}}]},
        "methods": {"kd": {"temperature": 8.0, "alpha": 0.5}},
    }
    params = [cfg.method.params for cfg in expand(spec).students]
    assert params == [{"temperature": 8.0, "alpha": 0.5}, {"temperature": 2.0, "alpha": 0.5}]


def test_duplicate_points_are_one_run():
    spec = {"base": BASE, "grid": {"seed": [0, 0]}, "extra": [{"seed": 0}]}
    assert len(expand(spec).students) == 1


def test_extends_merges_mappings_and_replaces_lists():
    parent = {
        "base": {"train": {"epochs": 2, "lr": 0.1}},
        "grid": {"seed": [0, 1], "method": ["kd"]},
    }
    child = {"base": {"train": {"epochs": 5}}, "grid": {"seed": [7]}}
    assert merge(parent, child) == {
        "base": {"train": {"epochs": 5, "lr": 0.1}},
        "grid": {"seed": [7], "method": ["kd"]},
    }


def test_demo_is_a_one_seed_slice_of_paper():
    paper, demo = expand(load_spec(preset="paper")), expand(load_spec(preset="demo"))
    assert {c.seed for c in paper.students} == {0, 1, 2}
    assert {c.seed for c in demo.students} == {0}
    assert {c.run_id() for c in demo.runs()} <= {c.run_id() for c in paper.runs()}
    methods = {(c.method.name, c.method.params.get("homogenize")) for c in paper.students}
    assert ("two-in-one", "pcgrad") in methods and ("feat-both", None) in methods
    assert {c.method.name for c in demo.students} == {m for m, _ in methods}
    assert len(paper.students) == 2 * 11 * 3 and len(paper.teachers) == 2


def test_teacher_ablation_shares_the_paper_lq_teacher():
    paper, ablation = (
        expand(load_spec(preset="paper")),
        expand(load_spec(preset="teacher-ablation")),
    )
    runs = ablation.students
    assert {(c.student.kwargs.get("branch"), c.seed) for c in runs} == {
        (branch, seed) for branch in (None, "spatial", "frequency") for seed in (0, 1, 2)
    }
    lq_teacher = next(t for t in paper.teachers if t.data.params["quality"] == "lq")
    assert lq_teacher.run_id() in {c.run_id() for c in runs}


def test_unknown_sweep_key_is_an_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: {}\ngrids: {seed: [0]}\n")
    with pytest.raises(ConfigError, match=r"sweep keys \['grids'\] are not known"):
        load_spec(path)


def record(method, seed, auc, quality="hq", status="done"):
    return {
        "status": status,
        "config": {
            "seed": seed,
            "data": {"name": "synthff", "params": {"quality": quality}},
            "student": {"name": "s", "kwargs": {}},
            "method": {"name": method, "params": {}},
        },
        "cost": {"student": {"params": 2_000_000, "flops": 3_000_000}},
        "best": {"test": {"acc": auc - 0.1, "auc": auc, "video_auc": auc}},
    }


def test_summary_groups_seeds_into_mean_and_std():
    records = [record("kd", 0, 0.8), record("kd", 1, 0.9), record("kd", 2, 0.7),
               record("vanilla", 0, 0.6), record("kd", 3, 0.1, status="failed")]  # fmt: skip
    rows = {r["method"]: r for r in summary_rows(records)}
    assert rows["kd"]["n"] == 3
    assert rows["kd"]["auc"] == pytest.approx(0.8)
    assert rows["kd"]["auc_std"] == pytest.approx(0.1)  # sample std of 0.7, 0.8, 0.9
    assert rows["vanilla"]["n"] == 1 and math.isnan(rows["vanilla"]["auc_std"])
    assert rows["kd"]["params_m"] == 2.0 and rows["kd"]["gflops"] == 0.003
