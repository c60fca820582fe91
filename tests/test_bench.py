"""`kdbench bench --suite`: a sweep preset timed end to end, away from the user's cache."""

import os

import pytest
from rich.console import Console

from kdbench.train.speed import cache_at, suite_table, suite_wall_time

pytestmark = pytest.mark.slow


def test_a_suite_runs_from_an_empty_cache_and_leaves_the_users_alone(monkeypatch, tmp_path):
    mine = tmp_path / "mine"
    monkeypatch.setenv("KDBENCH_CACHE", str(mine))
    row = suite_wall_time("smoke")
    assert (row.preset, row.runs, row.failed) == ("smoke", 5, 0)  # 1 teacher + 2 methods x 2
    assert row.teacher_s > 0 and row.student_s > 0
    assert row.teacher_s + row.student_s <= row.wall_s
    assert os.environ["KDBENCH_CACHE"] == str(mine) and not mine.exists()
    console = Console(width=200, record=True)
    console.print(suite_table([row], 2))
    assert "│ smoke  │    5 │      0 │" in console.export_text()


def test_cache_at_restores_an_unset_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("KDBENCH_CACHE", raising=False)
    with cache_at(tmp_path):
        assert os.environ["KDBENCH_CACHE"] == str(tmp_path)
    assert "KDBENCH_CACHE" not in os.environ


def test_every_method_has_a_bench_setup_that_steps():
    """`kdbench bench` times every registered method: each builds its setup (preact features
    and classifier heads included) and takes one step, live and cached."""
    import torch

    from kdbench.models import build_model
    from kdbench.registry import METHODS
    from kdbench.train.speed import method_setup, synthetic_batch
    from kdbench.train.step import train_step

    teacher = build_model("dual-branch", 2, spatial="resnet10t", frequency="resnet10t").eval()
    teacher.requires_grad_(False)
    batch = synthetic_batch(4, 64)
    shipped = [n for n in METHODS.names() if METHODS.get(n).__module__.startswith("kdbench.")]
    for name in shipped:
        for cached in (False, True):
            setup = method_setup(name, teacher, batch, cached=cached)
            losses = train_step(setup, batch)
            assert all(torch.isfinite(v) for v in losses.values()), (name, cached)
