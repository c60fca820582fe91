"""Run ids change only on purpose.

A run id hashes the resolved config and the code version of the method, models and datasets it
uses, so an edit that moves code around (a refactor) must leave every id as it was, or every
stored result would silently stop counting. ``tests/data/run_ids.json`` holds the ids of every
shipped sweep preset and of one config per registered method, model and dataset.

When a change is *meant* to change results (a new default, a fixed loss), bump the piece's
``version`` and rewrite the file: ``python tests/test_run_ids.py --update``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kdbench.config import build_config, load_preset, preset_names
from kdbench.registry import DATASETS, METHODS, MODELS
from kdbench.sweep import expand, load_spec

GOLDEN = Path(__file__).parent / "data" / "run_ids.json"


def current_ids() -> dict:
    presets = {
        name: [cfg.run_id() for cfg in expand(load_spec(preset=name)).runs()]
        for name in preset_names("sweep")
    }
    single = {f"method={n}": build_config({"method": {"name": n}}) for n in METHODS.names()}
    single |= {f"data={n}": build_config({"data": {"name": n}}) for n in DATASETS.names()}
    single |= {f"student={n}": build_config({"student": {"name": n}}) for n in MODELS.names()}
    single["run preset smoke"] = build_config(load_preset("smoke"))
    return {"presets": presets, "configs": {k: cfg.run_id() for k, cfg in single.items()}}


def test_every_run_id_is_unchanged():
    want, got = json.loads(GOLDEN.read_text()), current_ids()
    changed = [
        f"{group} {key}"
        for group in ("presets", "configs")
        for key in want[group].keys() | got[group].keys()
        if want[group].get(key) != got[group].get(key)
    ]
    assert not changed, f"run ids changed for {changed}; see this test's docstring"


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    GOLDEN.write_text(json.dumps(current_ids(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
