"""Run JSONs → DataFrames: loading (damaged files named, duplicates counted once), one row
per finished run, failed runs with their reason, per-epoch histories, groups and recipes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kdbench.config import NOT_HASHED, ConfigError
from kdbench.report.columns import run_value_names, run_values
from kdbench.report.labels import METRIC_LABELS, data_label, method_label, model_label
from kdbench.report.stats import CONVERGED_WITHIN, last_quarter_movement
from kdbench.results import DamagedResult, check_result

CELL = ["dataset", "teacher", "student", "method"]
GROUP = [*CELL, "variant"]
# Config keys that never split a group: the replicate itself, and what the run id ignores
# (where a run ran, how it read its data, whether its teacher outputs came from the cache).
NOT_A_VARIANT = {"seed", "teacher.seed", "teacher.run", *NOT_HASHED}
LOCATION_SUFFIXES = ("root", "dir", "path", "checkpoint")
TITLE = "kdbench report"


class ReportInputError(ConfigError):
    """Run results the report cannot use; the message names the file and what is wrong."""


def load_runs(folders: Iterable[Path]) -> tuple[list[dict], list[str]]:
    """Every run record under each folder's ``runs/`` (or directly in the folder), and one
    line per file left out because it is not a usable run result."""
    records, skipped = [], []
    for path in (path for folder in folders for path in run_files(Path(folder))):
        try:
            records.append(read_run(path))
        except DamagedResult as err:
            skipped.append(str(err))
    return records, skipped


def run_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ReportInputError(f"{folder}: no such folder")
    runs = folder / "runs"
    files = sorted((runs if runs.is_dir() else folder).glob("*.json"))
    if not files:
        raise ReportInputError(f"{folder}: no run results (expected {runs}/<run-id>.json)")
    return files


def read_run(path: Path) -> dict:
    """The run record in ``path``; raises DamagedResult if it is not a usable one."""
    record = check_result(path)
    if record["status"] == "done":
        missing = [k for k in ("config", "best", "cost", "history") if k not in record]
        if missing:
            raise DamagedResult(f"{path}: a finished run without {', '.join(missing)}")
    return record


def unique_runs(records: Sequence[dict]) -> tuple[list[dict], int]:
    """One record per run id (a finished one first, then the latest); and how many were extra.

    The same run id is the same experiment, e.g. result folders copied from two clusters: it
    must count once, not as two seeds.
    """
    best: dict[str, dict] = {}
    for record in records:
        kept = best.get(record["run_id"])
        if kept is None or rank(record) > rank(kept):
            best[record["run_id"]] = record
    return list(best.values()), len(records) - len(best)


def rank(record: dict) -> tuple[bool, str]:
    return record["status"] == "done", str(record.get("finished", ""))


def runs_frame(records: Sequence[dict], within: float = CONVERGED_WITHIN) -> pd.DataFrame:
    """One row per finished run: labels, seed, student cost, whether it converged (its
    validation selection metric moved less than ``within`` points over the last quarter of its
    epochs), test metrics (%) at the best epoch."""
    done = [r for r in records if r["status"] == "done"]
    if not done:
        return pd.DataFrame(columns=run_columns())
    frame = pd.DataFrame([run_row(r, within) for r in done])
    frame["variant"] = variant_labels(frame, [r["config"] for r in done])
    frame["role"] = roles(frame, teacher_runs(done))
    frame["recipe"] = [recipe(r["config"]) for r in done]
    return frame


LABELS = ["run_id", "dataset", "data_name", "teacher", "teacher_name", "student",
          "student_name", "method", "method_name", "variant", "role", "recipe"]  # fmt: skip


def run_columns() -> list[str]:
    """The runs frame's columns before the metrics: labels, seed, the selection metric, each
    column's run value (columns.COLUMNS), convergence."""
    return [*LABELS, "seed", "select", *run_value_names(), "val_movement", "converged"]


def run_row(record: dict, within: float) -> dict:
    cfg = record["config"]
    teacher = cfg.get("teacher")
    select = cfg.get("train", {}).get("select", "acc")
    movement = last_quarter_movement(selection_curve(record["history"], select))
    return {
        "run_id": record["run_id"],
        "dataset": data_label(cfg["data"]),
        "data_name": cfg["data"]["name"],
        "teacher": model_label(teacher) if teacher else "",
        "teacher_name": teacher["name"] if teacher else "",
        "student": model_label(cfg["student"]),
        "student_name": cfg["student"]["name"],
        "method": method_label(cfg["method"]),
        "method_name": cfg["method"]["name"],
        "variant": "",
        "role": "",
        "seed": cfg["seed"],
        "select": select,
        **run_values(record),
        "val_movement": movement,
        "converged": movement < within,
    } | {metric: 100 * value for metric, value in record["best"]["test"].items()}


def selection_curve(history: Sequence[dict], select: str) -> list[float]:
    """The validation metric a run picked its best epoch by (%), per epoch; ACC where an epoch
    lacks it, as the harness's ``best_epoch`` does."""
    curve = []
    for entry in sorted(history, key=lambda entry: entry["epoch"]):
        val = entry.get("val", {})
        curve.append(100 * val.get(select, val.get("acc", math.nan)))
    return curve


def failed_frame(records: Sequence[dict]) -> pd.DataFrame:
    """Runs that did not finish, with the reason (the first line of the error)."""
    rows = []
    for record in records:
        if record["status"] == "done":
            continue
        cfg = record.get("config") or {}
        error = str(record.get("error") or f"status {record['status']!r}").strip()
        rows.append(
            {
                "run_id": record["run_id"],
                "dataset": data_label(cfg["data"]) if "data" in cfg else "?",
                "student": model_label(cfg["student"]) if "student" in cfg else "?",
                "method": method_label(cfg["method"]) if "method" in cfg else "?",
                "seed": cfg.get("seed", ""),
                "status": record["status"],
                "error": error.splitlines()[0] if error else "",
            }
        )
    return pd.DataFrame(
        rows, columns=["run_id", "dataset", "student", "method", "seed", "status", "error"]
    )


def variant_labels(frame: pd.DataFrame, configs: Sequence[dict]) -> pd.Series:
    """Config keys whose values differ inside one table cell, e.g. ``train.epochs=20``.

    Runs of different recipes must not be averaged as if they were seeds of one, so each
    recipe found in a cell becomes its own row, labelled by what sets it apart.
    """
    flat = pd.json_normalize(list(configs), sep=".")
    # a key some runs lack (written by an older kdbench) is unknown there, not different
    flat = flat[[c for c in flat.columns if is_recipe_key(c)]].map(show, na_action="ignore")
    flat.index = frame.index
    varies = flat.groupby([frame[c] for c in CELL], sort=False).transform("nunique") > 1
    labels = pd.Series("", index=frame.index, dtype=object)
    for i in varies.index[varies.any(axis=1)]:
        labels[i] = ", ".join(f"{k}={flat.at[i, k]}" for k in flat.columns[varies.loc[i]])
    return labels


def is_recipe_key(key: str) -> bool:
    return key not in NOT_A_VARIANT and not key.rsplit(".", 1)[-1].endswith(LOCATION_SUFFIXES)


def show(value: object) -> str:
    """A config value as text: strings bare, anything else as JSON."""
    value = value.item() if isinstance(value, np.generic) else value
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def recipe(config: dict) -> dict[str, str]:
    """What a run's numbers depend on besides its method and teacher: its config flattened
    (``train.epochs``), each mapping marked too (so ``null`` never equals a mapping), without
    the keys that are no recipe (seed, what the run id does not hash, locations)."""
    return {
        key: value
        for key, value in flatten(config).items()
        if key.split(".")[0] not in ("method", "teacher") and is_recipe_key(key)
    }


def flatten(node: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in node.items():
        path = prefix + str(key)
        if isinstance(value, dict):
            flat[path] = "{mapping}"
            flat |= flatten(value, path + ".")
        else:
            flat[path] = show(value)
    return flat


def same_recipe(ours: dict[str, str], theirs: dict[str, str]) -> bool:
    """Equal wherever both say; a key one of them lacks (older kdbench) is unknown there."""
    return all(ours[key] == theirs[key] for key in ours.keys() & theirs.keys())


def merged(recipes: pd.Series) -> dict[str, str]:
    """The recipe of a group: what its runs say (they differ only where a run is silent)."""
    out: dict[str, str] = {}
    for part in recipes:
        out |= part
    return out


def setting(group_recipe: dict[str, str]) -> str:
    """The recipe apart from the student: groups with the same one share a Pareto front."""
    kept = {k: v for k, v in group_recipe.items() if k.split(".")[0] != "student"}
    return json.dumps(kept, sort_keys=True)


def roles(frame: pd.DataFrame, teacher_ids: set[str] = frozenset()) -> pd.Series:
    """``teacher``, ``baseline`` (any other vanilla run: the student trained alone) or
    ``distilled``. A vanilla run teaches when another run names its id as ``teacher.run``;
    where no such run is here (teachers given by checkpoint), when its model teaches others
    on the same data, so a plain vanilla run of a teacher's model is a baseline whenever the
    real teacher run is present."""
    vanilla = (frame["method_name"] == "vanilla") & (frame["teacher"] == "")
    pairs = list(zip(frame["dataset"], frame["student"], strict=True))
    named = frame["run_id"].isin(teacher_ids).to_numpy()
    known = {pair for pair, is_named in zip(pairs, named, strict=True) if is_named}
    teachers = set(zip(frame["dataset"], frame["teacher"], strict=True)) - known
    teaches = named | np.array([pair in teachers for pair in pairs], bool)
    role = np.where(vanilla, "baseline", "distilled")
    return pd.Series(np.where(vanilla & teaches, "teacher", role), frame.index)


def teacher_runs(records: Sequence[dict]) -> set[str]:
    """The run ids that finished runs name as their teacher (``teacher.run``)."""
    teachers = [r["config"].get("teacher") or {} for r in records]
    return {t["run"] for t in teachers if t.get("run")}


def history_frame(records: Sequence[dict], split: str = "val") -> pd.DataFrame:
    """Per-epoch ``split`` metrics (%) of every finished run: run_id, epoch, metrics."""
    rows = [
        {"run_id": r["run_id"], "epoch": entry["epoch"]}
        | {m: 100 * v for m, v in entry.get(split, {}).items()}
        for r in records
        if r["status"] == "done"
        for entry in r["history"]
    ]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run_id", "epoch"])


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Metrics with at least one value, in the order of METRIC_LABELS, then the rest."""
    known = set(run_columns())
    found = [c for c in frame.columns if c not in known and frame[c].notna().any()]
    return sorted(
        found, key=lambda m: (list(METRIC_LABELS).index(m) if m in METRIC_LABELS else 99, m)
    )
