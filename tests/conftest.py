"""Shared fixtures: a private cache dir, and tiny configs that train in seconds."""

from __future__ import annotations

import pytest

from kdbench.config import build_config, load_preset


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Generated corpora go to a per-session folder, never the user's ~/.cache."""
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def tiny():
    """A smoke-preset config made smaller still: one epoch, a handful of videos."""

    def make(*overrides: str):
        base = ["data.params.videos=20", "train.epochs=1", "teacher.train.epochs=1"]
        return build_config(load_preset("smoke"), [*base, *overrides])

    return make
