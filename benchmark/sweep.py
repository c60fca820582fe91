"""Sweeps: a base config × a grid, expanded into teacher runs and the student runs that use them."""

from __future__ import annotations

import copy
import itertools
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from kdbench.config import (
    ConfigError,
    RunConfig,
    TeacherConfig,
    TrainConfig,
    from_dict,
    load_preset,
    load_yaml,
    set_path,
)
from kdbench.registry import METHODS

SPEC_KEYS = ("name", "description", "extends", "base", "grid", "methods", "extra")


@dataclass
class Plan:
    """Runs in the order they must happen: every teacher before the students that use it."""

    teachers: list[RunConfig] = field(default_factory=list)
    students: list[RunConfig] = field(default_factory=list)

    def runs(self) -> list[RunConfig]:
        return self.teachers + self.students


def load_spec(path: str | None = None, preset: str | None = None) -> dict:
    """A sweep spec from a file or a preset; ``extends: PRESET`` starts from that preset."""
    spec = load_preset(preset, "sweep") if preset else load_yaml(path)
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"sweep keys {unknown} are not known (expected: {', '.join(SPEC_KEYS)})")
    if "extends" in spec:
        spec = merge(load_spec(preset=spec.pop("extends")), spec)
    return spec


def merge(parent: dict, child: dict) -> dict:
    """``child`` over ``parent``: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def expand(spec: dict) -> Plan:
    """All runs of a sweep spec: the grid's product plus ``extra`` runs, teachers resolved.

    ``grid`` maps dotted keys to lists; ``grid.method`` entries are a method name or
    ``{name, params}``. ``methods`` maps a method name to parameters applied whenever that
    method runs (grid-given parameters win). ``extra`` lists override-mappings for one-off runs.
    """
    base = spec.get("base", {})
    grid = spec.get("grid", {})
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    combos += spec.get("extra", [])
    plan = Plan()
    seen: set[str] = set()
    for combo in combos:
        cfg = resolve_teacher(point(base, combo, spec.get("methods", {})), plan, seen)
        add(plan.students, cfg, seen)
    return plan


def point(base: dict, combo: dict, method_params: dict) -> RunConfig:
    data = copy.deepcopy(base)
    for key, value in combo.items():
        if key == "method":
            value = {"name": value} if isinstance(value, str) else copy.deepcopy(value)
        set_path(data, key.split("."), value)
    method = data.setdefault("method", {"name": "vanilla"})
    defaults = copy.deepcopy(method_params.get(method.get("name", "vanilla"), {}))
    method["params"] = defaults | method.get("params", {})
    return from_dict(RunConfig, data)


def resolve_teacher(cfg: RunConfig, plan: Plan | None = None, seen: set | None = None) -> RunConfig:
    """Point ``cfg`` at the run that trains its teacher (added to ``plan``), if it needs one.

    A teacher given by ``run`` or ``checkpoint`` is used as is. Otherwise the teacher is a
    vanilla run of ``teacher.name`` on the same data, with ``teacher.seed`` and the student's
    training settings updated by ``teacher.train``.
    """
    if not METHODS.get(cfg.method.name).needs_teacher:
        return replace(cfg, teacher=None)
    t = cfg.teacher
    if t is None:
        raise ConfigError(f"method {cfg.method.name!r} needs a teacher: set teacher.name")
    if t.run or t.checkpoint:
        return cfg
    teacher_cfg = teacher_run_config(cfg, t)
    if plan is not None:
        add(plan.teachers, teacher_cfg, seen if seen is not None else set())
    return replace(cfg, teacher=replace(t, run=teacher_cfg.run_id()))


def teacher_run_config(cfg: RunConfig, t: TeacherConfig) -> RunConfig:
    train = from_dict(TrainConfig, asdict(cfg.train) | t.train, "teacher.train")
    student = from_dict(type(cfg.student), {"name": t.name, "kwargs": t.kwargs})
    return RunConfig(seed=t.seed, student=student, data=cfg.data, train=train, device=cfg.device)


def add(runs: list[RunConfig], cfg: RunConfig, seen: set[str]) -> None:
    run_id = cfg.run_id()
    if run_id not in seen:
        seen.add(run_id)
        runs.append(cfg)


def run_local(plan: Plan, results: Path, progress: bool | None = None, log=print) -> list[dict]:
    """Run every run of ``plan`` in this process, in order; failures are recorded, not fatal."""
    from kdbench.harness import run  # the harness imports torch; planning need not

    records = []
    for i, cfg in enumerate(plan.runs(), 1):
        log(f"[{i}/{len(plan.runs())}] {describe(cfg)}  ({cfg.run_id()})")
        try:
            records.append(run(cfg, results, progress=progress))
        except Exception as err:  # recorded in the run's JSON by the harness
            log(f"    failed: {type(err).__name__}: {err}")
            records.append({"run_id": cfg.run_id(), "status": "failed", "error": str(err)})
    return records


def describe(cfg: RunConfig) -> str:
    """A one-line label of a run for logs: data, model, method, seed."""
    from kdbench.summary import data_label, method_label, model_label

    parts = asdict(cfg)
    models = model_label(parts["student"]), method_label(parts["method"])
    return f"{data_label(parts['data'])} | {' | '.join(models)} | seed {cfg.seed}"
