"""Sweeps: a base config × a grid, expanded into teacher runs and the student runs that use them,
and where each of those runs stands (its result on disk, its job in the scheduler)."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

from kdbench.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    TeacherConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_preset,
    load_yaml,
    set_path,
)
from kdbench.jobs import Job, JobState, job_paths, job_states, latest_jobs
from kdbench.registry import METHODS
from kdbench.results import read_result

SPEC_KEYS = ("name", "description", "extends", "base", "grid", "methods", "extra")
STATES = ("done", "running", "queued", "failed", "missing")
INTERRUPTED = "interrupted"  # the status of a run stopped by Ctrl-C or SIGTERM: resubmitted
RESUMES = "resumes from its last epoch"


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


def load_spec(
    path: str | Path | None = None, preset: str | None = None, overrides: list[str] = ()
) -> dict:
    """A sweep spec from a file or a sweep preset, then ``key.sub=value`` overrides.

    ``extends: PRESET`` starts from that sweep preset; ``base: NAME`` takes the run preset NAME
    as the base config. Overrides address the spec, e.g. ``base.train.epochs=1`` or
    ``grid.seed=[0,1]``.
    """
    if bool(path) == bool(preset):
        raise ConfigError("give either a sweep file or --preset NAME (not both)")
    spec = load_preset(preset, "sweep") if preset else load_yaml(path)
    check_keys(spec)
    if "extends" in spec:
        parent = load_spec(preset=spec.pop("extends"))
        spec = merge({k: v for k, v in parent.items() if k not in ("name", "description")}, spec)
    if isinstance(spec.get("base"), str):
        spec["base"] = load_preset(spec["base"], "run")
    spec = apply_overrides(spec, list(overrides))
    check_keys(spec)
    check_shape(spec)
    return spec


def check_keys(spec: dict) -> None:
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"sweep keys {unknown} are not known (expected: {', '.join(SPEC_KEYS)})")


def check_shape(spec: dict) -> None:
    if not isinstance(spec.get("base", {}), dict):
        raise ConfigError(f"base: expected a mapping or a run preset's name, got {spec['base']!r}")
    if not isinstance(spec.get("grid", {}), dict):
        raise ConfigError(f"grid: expected a mapping of keys to lists, got {spec['grid']!r}")
    for key, values in spec.get("grid", {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key}: expected a non-empty list of values, got {values!r}")
    extra = spec.get("extra", [])
    if not isinstance(extra, list) or not all(isinstance(e, dict) for e in extra):
        raise ConfigError(f"extra: expected a list of mappings (one per run), got {extra!r}")


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
    student = from_dict(type(cfg.student), {"name": t.name, "kwargs": t.kwargs})
    run = RunConfig(seed=t.seed, student=student, data=data, train=train, device=cfg.device)
    return run.resolved()


def add(runs: list[RunConfig], cfg: RunConfig, seen: set[str]) -> None:
    run_id = cfg.run_id()
    if run_id not in seen:
        seen.add(run_id)
        runs.append(cfg)


def run_local(plan: Plan, results: Path, progress: bool | None = None, log=print) -> list[dict]:
    """Run every run of ``plan`` in this process, in order; failures are recorded, not fatal."""
    from kdbench.train import run  # a run imports torch; planning need not

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
    from kdbench.report.labels import data_label, method_label, model_label

    parts = asdict(cfg)
    models = model_label(parts["student"]), method_label(parts["method"])
    return f"{data_label(parts['data'])} | {' | '.join(models)} | seed {cfg.seed}"


@dataclass
class RunStatus:
    """Where one run of a sweep stands: ``state`` is one of STATES."""

    cfg: RunConfig
    role: str  # teacher | student
    state: str = "missing"
    detail: str = ""  # the error of a failed run; the job and the scheduler's word otherwise
    job: Job | None = None

    @cached_property
    def run_id(self) -> str:
        return self.cfg.run_id()

    @property
    def teacher_run(self) -> str | None:
        return self.cfg.teacher.run if self.cfg.teacher else None


def run_states(plan: Plan, results: Path, scheduler: bool = True) -> list[RunStatus]:
    """Where every run of ``plan`` stands, from its result JSON and its latest job.

    A finished result wins; then a job still queued or running (a retry of a failed run). An
    interrupted run (its record says so, or this sweep cancelled its local job on Ctrl-C) is
    missing again: the next sweep run resumes it. Then a failed result; a job that ended without
    writing one (cancelled by the scheduler, timed out, killed) counts as failed too.
    ``scheduler=False`` reads the results only. Raises ``SchedulerError`` when the scheduler
    cannot be asked.
    """
    states = [RunStatus(cfg, role) for role, cfg in plan.roles()]
    records = {s.run_id: read_result(results, s.run_id) for s in states}
    unfinished = {s.run_id for s in states if (records[s.run_id] or {}).get("status") != "done"}
    jobs = latest_jobs(results) if scheduler else {}
    jobs = {run_id: job for run_id, job in jobs.items() if run_id in unfinished}
    live = job_states(results, jobs.values())
    states = [
        classify(s, records[s.run_id], jobs.get(s.run_id), live.get(s.run_id), results)
        for s in states
    ]
    return note_blocked(states, {run_id for run_id, record in records.items() if record})


def classify(
    status: RunStatus, record: dict | None, job: Job | None, live: JobState | None, results: Path
) -> RunStatus:
    if record and record.get("status") == "done":
        return replace(status, state="done", detail="")
    if job and live and live.phase in ("queued", "running"):
        detail = f"{job.executor} job {job.job_id}: {live.word}"
        return replace(status, state=live.phase, detail=detail, job=job)
    if record and record.get("status") == INTERRUPTED:
        return replace(status, state="missing", detail=f"{INTERRUPTED}: {RESUMES}", job=job)
    if record:
        return replace(status, state="failed", detail=record.get("error", "failed"), job=job)
    if job and job.cancelled:
        detail = f"{job.executor} job {job.job_id} cancelled by the sweep: {RESUMES}"
        return replace(status, state="missing", detail=detail, job=job)
    if job and live:
        detail = f"{job.executor} job {job.job_id} ended ({live.word}) without a result"
        log = job_paths(results, job.job_id).stderr
        detail += f"; log: {log}" if log.exists() else ""
        return replace(status, state="failed", detail=detail, job=job)
    return status


def note_blocked(states: list[RunStatus], with_result: set[str]) -> list[RunStatus]:
    """A student without a result whose teacher failed says so (its job, if any, was cancelled
    by Slurm: its ``afterok`` dependency can never be met)."""
    failed = {s.run_id for s in states if s.state == "failed"}
    blocked = [
        s.run_id
        for s in states
        if s.teacher_run in failed and s.run_id not in with_result and s.state != "running"
    ]
    return [
        replace(s, detail=f"teacher {s.teacher_run} failed") if s.run_id in blocked else s
        for s in states
    ]


def to_submit(
    states: list[RunStatus], retry_failed: bool = False, rerun: bool = False
) -> list[RunStatus]:
    """Runs to (re)submit: missing ones, failed ones with ``retry_failed``, and every run not
    under way with ``rerun``."""
    wanted = {"missing", "failed"} if retry_failed else {"missing"}
    wanted |= {"done", "failed"} if rerun else set()
    return [s for s in states if s.state in wanted]


def counts(states: list[RunStatus]) -> dict[str, int]:
    """How many runs are in each state (every state listed, zeros included)."""
    return {state: sum(s.state == state for s in states) for state in STATES}


@dataclass
class Candidate:
    """One parameter setting of a method in a tuning sweep, scored on the validation split."""

    method: str
    setting: dict  # the parameters that vary between this method's candidates
    scores: list[float]  # per seed: the validation metric at the run's best (val) epoch
    chosen: bool = False

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


def pick(records: list[dict], metric: str = "auc") -> list[Candidate]:
    """Per method, the parameter setting with the best mean validation ``metric`` over its
    seeds (the test split is never read); ties go to the first setting in the sweep."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        method = record["config"]["method"]
        key = (method["name"], json.dumps(method["params"], sort_keys=True, default=str))
        groups.setdefault(key, []).append(record)
    candidates = []
    for name in dict.fromkeys(name for name, _ in groups):
        settings = {json_params: runs for (n, json_params), runs in groups.items() if n == name}
        varied = varying_keys([json.loads(p) for p in settings])
        own = [candidate(name, json.loads(p), varied, runs, metric) for p, runs in settings.items()]
        max(own, key=lambda c: c.mean).chosen = True
        candidates += own
    return candidates


def candidate(name: str, params: dict, varied: list[str], runs: list[dict], metric: str):
    setting = {key: params.get(key) for key in varied}
    return Candidate(name, setting, [val_score(run, metric) for run in runs])


def varying_keys(settings: list[dict]) -> list[str]:
    keys = sorted({k for s in settings for k in s})
    return [k for k in keys if len({json.dumps(s.get(k), default=str) for s in settings}) > 1]


def val_score(record: dict, metric: str) -> float:
    val = record["best"]["val"]
    if metric not in val:
        raise ConfigError(f"metric {metric!r} is not in the validation metrics ({', '.join(val)})")
    return val[metric]
