"""A run's record, the JSON in ``results/runs/``: finished or failed, which epoch is its
result, and whether a finished one can be trusted (its weights intact)."""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from kdbench import __version__
from kdbench.config import RunConfig
from kdbench.identity import code_version
from kdbench.report.labels import better
from kdbench.results import git_sha, package_versions, read_result, run_path, set_aside, write_json
from kdbench.train.checkpoint import verify
from kdbench.train.cost import FLOP_CONVENTION, Cost, count_params, measure_cost
from kdbench.train.precision import dtype_name
from kdbench.train.threads import threads_record

if TYPE_CHECKING:
    from kdbench.train.setup import Setup


def trusted_result(results: Path, run_id: str, log, need_weights: bool = False) -> dict | None:
    """The run's finished record unless its weights are damaged (or, with ``need_weights``, as
    for a teacher, missing): then the record is set aside and the run must be trained again.
    A record without its weights is still a result (e.g. a results folder copied without
    ``checkpoints/``)."""
    record = read_result(results, run_id)
    if record is None and run_path(results, run_id).exists():  # damaged: keep it, out of the way
        aside = set_aside(run_path(results, run_id))
        log(f"run {run_id}: its record is damaged; set aside as {aside.name}, training it again")
    if not record or record.get("status") != "done":
        return None
    weights = results / record["checkpoint"] if record.get("checkpoint") else None
    if weights is None or not weights.exists():
        missing = f"its weights {weights or '(none recorded)'} are missing"
        problem = missing if need_weights else None
    else:
        problem = verify(weights)
    if problem is None:
        return record
    aside = set_aside(run_path(results, run_id))
    log(f"run {run_id}: {problem}; its record set aside as {aside.name}, training it again")
    return None


def record_unless_done(path: Path, record: dict, log) -> None:
    """Write a failure record to ``path``, unless a finished record is there (a ``--rerun``
    that failed) or the disk refuses it (the error is raised either way)."""
    current = read_result(path.parent.parent, path.stem)  # results/runs/<run id>.json
    if current and current.get("status") == "done":
        return
    try:
        write_json(path, record)
    except OSError as err:
        log(f"cannot record the failure in {path}: {err}")


def finished_record(cfg: RunConfig, setup: Setup, state: dict, results: Path) -> dict:
    datasets = setup.datasets  # whole splits (a process's loaders hold its share)
    image_shape = tuple(datasets["train"][0]["image"].shape)
    run_id = cfg.run_id()
    history = state["history"]
    return base_record(cfg) | {
        "status": "done",
        "history": history,
        "best": best_epoch(history, cfg.train.select),
        "last": {k: history[-1][k] for k in ("epoch", "val", "test")},
        "cost": cost_record(cfg, setup, image_shape),
        "dataset": {
            "name": cfg.data.name,
            "num_classes": setup.method.num_classes,
            "image_shape": list(image_shape),
        }
        | {f"{s}_size": len(dataset) for s, dataset in datasets.items()},
        "teacher": setup.notes or None,
        "checkpoint": str(Path("checkpoints") / run_id / "model.pt"),
        "device": str(setup.device),
        "processes": setup.world.size,  # train.devices: the processes that shared each batch
        "cpu": threads_record(),  # intra-op threads and the CPUs (affinity) of the main one
        "precision": dtype_name(setup.dtype),  # the student's (train.precision)
        "precision_verdict": setup.verdict,  # how auto chose it: both timings
        "finished": now(),
        "wall_time_s": state["wall_time_s"],  # every attempt's, up to its last checkpoint
        "attempts": state["attempts"],
        "resumed_from_epoch": state["resumed_from_epoch"],  # 0: the last attempt started fresh
        "checkpoint_faults": state["checkpoint_faults"],
    }


def best_epoch(history: list[dict], metric: str) -> dict:
    """The epoch with the best validation ``metric`` (ties: the later epoch); NaN counts last."""

    best = max(reversed(history), key=lambda entry: selection_score(entry, metric))
    return {k: best[k] for k in ("epoch", "val", "test")} | {"selected_by": metric}


def selection_score(entry: dict, metric: str) -> float:
    """An epoch's validation ``metric`` (accuracy where the split lacks it), larger is better
    (EER negated); NaN counts last."""
    if metric not in entry["val"]:
        metric = "acc"
    value = better(metric, entry["val"][metric])
    return -math.inf if math.isnan(value) else value


def cost_record(cfg: RunConfig, setup: Setup, image_shape: tuple) -> dict:
    """The deployed student's cost (the student, or what its method deploys, e.g. SimKD's
    student + projector + the teacher's classifier), the teacher's, and the method's own
    training-time parameters."""
    deployed = setup.method.deployed(setup.student)
    if deployed is setup.student:
        student = model_cost(cfg.student, setup.student, image_shape)
    else:
        student = measure_cost(deployed, image_shape)
    teacher = model_cost(cfg.teacher, setup.teacher, image_shape) if setup.teacher else None
    return {
        "student": asdict(student),
        "teacher": asdict(teacher) if teacher else None,
        "method_params": count_params(setup.method),  # training-time only, not deployed
        "flop_convention": FLOP_CONVENTION,
    }


COSTS: dict[str, Cost] = {}  # per architecture and input shape, for this process


def model_cost(model_cfg, model: nn.Module, image_shape: tuple) -> Cost:
    """``measure_cost`` once per architecture (name, kwargs) and input shape in this process:
    a sweep's runs share a student and a teacher, and tracing them costs seconds each time."""
    key = json.dumps([model_cfg.name, model_cfg.kwargs, list(image_shape)], sort_keys=True)
    if key not in COSTS:
        COSTS[key] = measure_cost(model, image_shape)
    return COSTS[key]


def base_record(cfg: RunConfig) -> dict:
    return {
        "run_id": cfg.run_id(),
        "config": asdict(cfg),
        "code": code_version(asdict(cfg)),
        "kdbench_version": __version__,
        "git_sha": git_sha(),
        "packages": package_versions(),
        "host": os.uname().nodename,
    }


def failed_record(
    cfg: RunConfig, err: BaseException, started: float, status: str = "failed"
) -> dict:
    return base_record(cfg) | {
        "status": status,
        "error": f"{type(err).__name__}: {err}".rstrip(": "),
        "traceback": traceback.format_exc(),
        "wall_time_s": time.time() - started,
        "finished": now(),
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
