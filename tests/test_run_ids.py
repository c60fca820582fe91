"""Run ids change only on purpose.

A run id hashes the resolved config and the code version of the method, models and datasets it
uses, so an edit that moves code around (a refactor) must leave every id as it was, or every
stored result would silently stop counting. ``tests/data/run_ids.json`` holds the ids of every
shipped sweep preset and of one config per registered method, model and dataset.

Every shipped piece declares its module's ``RESULT_VERSION``, and the file records the source
digest each version was seen with, so an edit cannot change a result and keep its ids unnoticed:
- an edit that changes what a module computes (a new default, a fixed loss): set a new
  ``RESULT_VERSION`` (the date), then ``python tests/test_run_ids.py --update`` (new ids);
- a refactor (moved, renamed, reformatted code): ``python tests/test_run_ids.py --update``
  records the new digest under the same version, and the ids stay.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kdbench.config import build_config, load_preset, preset_names
from kdbench.identity import defining_module, module_digest
from kdbench.models.timm_net import TimmNet
from kdbench.registry import DATASETS, METHODS, MODELS
from kdbench.sweep.plan import expand
from kdbench.sweep.spec import load_spec

GOLDEN = Path(__file__).parent / "data" / "run_ids.json"


def current_ids() -> dict:
    presets = {
        name: [cfg.run_id() for cfg in expand(load_spec(preset=name)).runs()]
        for name in preset_names("sweep")
    }
    single = {f"method={n}": build_config({"method": {"name": n}}) for n in shipped(METHODS)}
    single |= {f"data={n}": build_config({"data": {"name": n}}) for n in shipped(DATASETS)}
    single |= {f"student={n}": build_config({"student": {"name": n}}) for n in shipped(MODELS)}
    single["run preset smoke"] = build_config(load_preset("smoke"))
    configs = {k: cfg.run_id() for k, cfg in single.items()}
    return {"presets": presets, "configs": configs, "versions": versions()}


def shipped(registry) -> list[str]:
    """The names kdbench itself registers (not those other tests' plugins added)."""
    return [n for n in registry.names() if defining_module(registry.get(n)).startswith("kdbench.")]


def versions() -> dict[str, list[str]]:
    """``{module: [RESULT_VERSION, source digest]}`` of every shipped piece that declares one."""
    pieces = [reg.get(n) for reg in (METHODS, MODELS, DATASETS) for n in shipped(reg)]
    found = {}
    for module in {defining_module(p) for p in [*pieces, TimmNet]}:
        declared = getattr(sys.modules[module], "RESULT_VERSION", None)
        if declared is not None:
            found[module] = [str(declared), module_digest(module)]
    return found


def test_every_run_id_is_unchanged():
    want, got = json.loads(GOLDEN.read_text()), current_ids()
    changed = [
        f"{group} {key}"
        for group in ("presets", "configs")
        for key in want[group].keys() | got[group].keys()
        if want[group].get(key) != got[group].get(key)
    ]
    assert not changed, f"run ids changed for {changed}; see this test's docstring"


def test_no_code_changed_under_an_old_result_version():
    want, got = json.loads(GOLDEN.read_text())["versions"], versions()
    edited = [
        m
        for m, (v, digest) in got.items()
        if m in want and want[m] == [v, want[m][1]] and want[m][1] != digest
    ]
    assert not edited, (
        f"{edited}: code changed under the same RESULT_VERSION; set a new one if results change, "
        "then (or for a refactor) run python tests/test_run_ids.py --update"
    )
    assert sorted(got) == sorted(want), "a shipped piece's module moved: --update (see docstring)"


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    GOLDEN.write_text(json.dumps(current_ids(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
