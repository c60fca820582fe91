"""A sweep's runs: a base config × a grid (plus one-off runs), expanded into the teacher runs
and the student runs that use them."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

from kdbench.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    TeacherConfig,
    TrainConfig,
)
from kdbench.registry import METHODS
from kdbench.schema import from_dict, set_path
from kdbench.sweep.spec import merge


@dataclass
class Plan:
    """Runs in the order they must happen: every teacher before the students that use it."""

    teachers: list[RunConfig] = field(default_factory=list)
    students: list[RunConfig] = field(default_factory=list)

    def runs(self) -> list[RunConfig]:
        return self.teachers + self.students

    def roles(self) -> Iterator[tuple[str, RunConfig]]:
        yield from (("teacher", cfg) for cfg in self.teachers)
        yield from (("student", cfg) for cfg in self.students)


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
    return from_dict(RunConfig, data).resolved()


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
    train = from_dict(TrainConfig, merge(asdict(cfg.train), t.train), "teacher.train")
    data = from_dict(DataConfig, merge(asdict(cfg.data), t.data), "teacher.data")
    student = {"name": t.name, "kwargs": t.kwargs, "pretrained": t.pretrained}
    student = from_dict(type(cfg.student), student)  # the teacher trains from its pretrained
    run = RunConfig(seed=t.seed, student=student, data=data, train=train, device=cfg.device)
    return run.resolved()


def add(runs: list[RunConfig], cfg: RunConfig, seen: set[str]) -> None:
    run_id = cfg.run_id()
    if run_id not in seen:
        seen.add(run_id)
        runs.append(cfg)


def describe(cfg: RunConfig) -> str:
    """A one-line label of a run for logs: data, model, method, seed."""
    from kdbench.report.labels import data_label, method_label, model_label

    parts = asdict(cfg)
    models = model_label(parts["student"]), method_label(parts["method"])
    return f"{data_label(parts['data'])} | {' | '.join(models)} | seed {cfg.seed}"
