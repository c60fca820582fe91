"""The report: run JSONs → per-dataset tables, plots and reference deltas in one browsable folder.

Every finished run is one row of a DataFrame; runs are grouped by dataset × teacher × student ×
method (seeds are the replicates). Failed runs are listed with their reason, never dropped.
Metrics are percentages; costs are those of the deployed student (``cost.student`` of a run:
``params``, ``flops`` and, where recorded, ``latency_ms``).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kdbench.config import NOT_HASHED, ConfigError
from kdbench.report_stats import (
    CONFIDENCE,
    CONVERGED_WITHIN,
    TARGET_DIFFERENCE,
    last_quarter_movement,
    minimum_detectable_difference,
    pooled_std,
    seeds_needed,
    t_half_width,
)
from kdbench.results import DamagedResult, check_result
from kdbench.summary import data_label, method_label, model_label

METRIC_LABELS = {
    "acc": "ACC",
    "top5": "top-5",
    "auc": "AUC",
    "video_acc": "video ACC",
    "video_auc": "video AUC",
}
CELL = ["dataset", "teacher", "student", "method"]
GROUP = [*CELL, "variant"]
# Config keys that never split a group: the replicate itself, and what the run id ignores
# (where a run ran, how it read its data, whether its teacher outputs came from the cache).
NOT_A_VARIANT = {"seed", "teacher.seed", "teacher.run", *NOT_HASHED}
LOCATION_SUFFIXES = ("root", "dir", "path", "checkpoint")
REFERENCES = Path(__file__).resolve().parent.parent / "results" / "references"
TITLE = "kdbench report"


class ReportInputError(ConfigError):
    """Run results the report cannot use; the message names the file and what is wrong."""


# ---------------------------------------------------------------------------------------------
# Loading


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


# ---------------------------------------------------------------------------------------------
# Frames


def runs_frame(records: Sequence[dict], within: float = CONVERGED_WITHIN) -> pd.DataFrame:
    """One row per finished run: labels, seed, student cost, whether it converged (its
    validation selection metric moved less than ``within`` points over the last quarter of its
    epochs), test metrics (%) at the best epoch."""
    done = [r for r in records if r["status"] == "done"]
    if not done:
        return pd.DataFrame(columns=RUN_COLUMNS)
    frame = pd.DataFrame([run_row(r, within) for r in done])
    frame["variant"] = variant_labels(frame, [r["config"] for r in done])
    frame["role"] = roles(frame)
    frame["recipe"] = [recipe(r["config"]) for r in done]
    return frame


RUN_COLUMNS = [
    "run_id",
    "dataset",
    "data_name",
    "teacher",
    "teacher_name",
    "student",
    "student_name",
    "method",
    "method_name",
    "variant",
    "role",
    "recipe",
    "seed",
    "select",
    "params_m",
    "gflops",
    "latency_ms",
    "val_movement",
    "converged",
]


def run_row(record: dict, within: float) -> dict:
    cfg, cost = record["config"], record["cost"]["student"]
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
        "params_m": cost["params"] / 1e6,
        "gflops": cost["flops"] / 1e9,
        "latency_ms": cost.get("latency_ms", math.nan),
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


def roles(frame: pd.DataFrame) -> pd.Series:
    """``teacher`` (a vanilla run of a model that teaches others here), ``baseline`` (any other
    vanilla run: the student trained alone) or ``distilled``."""
    teachers = set(zip(frame["dataset"], frame["teacher"], strict=True))
    vanilla = (frame["method_name"] == "vanilla") & (frame["teacher"] == "")
    teaches = [(d, s) in teachers for d, s in zip(frame["dataset"], frame["student"], strict=True)]
    role = np.where(vanilla, "baseline", "distilled")
    return pd.Series(np.where(vanilla & np.array(teaches, bool), "teacher", role), frame.index)


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
    found = [c for c in frame.columns if c not in RUN_COLUMNS and frame[c].notna().any()]
    return sorted(
        found, key=lambda m: (list(METRIC_LABELS).index(m) if m in METRIC_LABELS else 99, m)
    )


# ---------------------------------------------------------------------------------------------
# Statistics


def summarise(runs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per group: ``n``, seeds, how many ``converged``, mean cost, and ``<metric>`` /
    ``<metric>_std`` (sample standard deviation over seeds; NaN for one seed) /
    ``<metric>_ci95`` (half-width of the 95% t-interval of the mean; NaN for one seed)."""
    aggregations = {
        "n": ("seed", "size"),
        "seeds": ("seed", lambda s: " ".join(str(x) for x in sorted(s))),
        "converged": ("converged", "sum"),
        "role": ("role", "first"),
        "data_name": ("data_name", "first"),
        "teacher_name": ("teacher_name", "first"),
        "student_name": ("student_name", "first"),
        "method_name": ("method_name", "first"),
        "recipe": ("recipe", merged),
        "params_m": ("params_m", "mean"),
        "gflops": ("gflops", "mean"),
        "latency_ms": ("latency_ms", "mean"),
    }
    for m in metrics:
        aggregations[m] = (m, "mean")
        aggregations[f"{m}_std"] = (m, "std")
        aggregations[f"{m}_ci95"] = (m, half_width)
    return runs.groupby(GROUP, sort=False).agg(**aggregations).reset_index()


def half_width(values: pd.Series) -> float:
    return t_half_width(values.std(), values.count())


def add_gains(groups: pd.DataFrame, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``delta``: ``metric`` minus the vanilla student's (same data and student), in points;
    the ``Comparison`` of the two over seeds in the columns named after its fields."""
    groups = groups.assign(delta=math.nan, **asdict(Comparison()))
    seeds = seed_means(runs, metric)
    baselines = groups[groups["role"] == "baseline"]
    for i, row in groups[groups["role"] == "distilled"].iterrows():
        base = baseline_of(baselines, row)
        if base is not None:
            found = compare(seeds[tuple(row[GROUP])], seeds[tuple(base[GROUP])])
            groups.loc[i, "delta"] = row[metric] - base[metric]
            groups.loc[i, list(asdict(found))] = list(asdict(found).values())
    return groups


def baseline_of(baselines: pd.DataFrame, row: pd.Series) -> pd.Series | None:
    """The vanilla group of ``row``'s student trained as ``row`` was (same data, student,
    training: the whole recipe), or None if there is no such group or more than one."""
    matches = baselines["recipe"].map(lambda theirs: same_recipe(row["recipe"], theirs))
    same = baselines[
        (baselines["dataset"] == row["dataset"])
        & (baselines["student"] == row["student"])
        & matches.astype(bool)
    ]
    return same.iloc[0] if len(same) == 1 else None


def seed_means(runs: pd.DataFrame, metric: str) -> dict[tuple, pd.Series]:
    """Per group: ``metric`` by seed (the mean if a seed ran twice), NaNs left out."""
    by_seed = runs.groupby([*GROUP, "seed"])[metric].mean()
    levels = list(range(len(GROUP)))
    return {key: part.droplevel(levels).dropna() for key, part in by_seed.groupby(level=levels)}


@dataclass(frozen=True)
class Comparison:
    """A group against its vanilla student over seeds (see ``compare``)."""

    p_value: float = math.nan
    test: str = ""
    delta_ci95: float = math.nan  # half-width of the 95% interval of the difference
    pairs: int = 0  # seeds the paired test shares
    pairs_std: float = math.nan  # sample std of the per-seed differences


def compare(ours: pd.Series, theirs: pd.Series) -> Comparison:
    """``ours`` vs ``theirs`` (indexed by seed): the paired t-test over common seeds, else
    Welch's t-test; NaN when either side has fewer than 2 seeds."""
    from scipy import stats

    common = ours.index.intersection(theirs.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical values: scipy warns, p = NaN
        if len(common) >= 2:
            p_value, ci95 = outcome(stats.ttest_rel(ours[common], theirs[common]))
            spread = float((ours[common] - theirs[common]).std())
            return Comparison(p_value, "paired t", ci95, len(common), spread)
        if len(ours) >= 2 and len(theirs) >= 2:
            p_value, ci95 = outcome(stats.ttest_ind(ours, theirs, equal_var=False))
            return Comparison(p_value, "Welch t", ci95)
    return Comparison()


def outcome(result) -> tuple[float, float]:
    """A scipy t-test result's p-value and the half-width of its confidence interval."""
    interval = result.confidence_interval(CONFIDENCE)
    return float(result.pvalue), float(interval.high - interval.low) / 2


def pareto_mask(cost: Sequence[float], score: Sequence[float]) -> np.ndarray:
    """True for points no other point beats: none is as cheap or cheaper *and* as good or
    better, with one of the two strict. NaN points are never on the front."""
    cost, score = np.asarray(cost, float), np.asarray(score, float)
    mask = np.zeros(len(cost), bool)
    best, last = -math.inf, (math.nan, math.nan)
    for i in np.lexsort((-score, cost)):  # cheapest first, the better of equal costs first
        if math.isnan(cost[i]) or math.isnan(score[i]):
            continue
        if score[i] > best or (cost[i], score[i]) == last:
            mask[i], best, last = True, score[i], (cost[i], score[i])
    return mask


def pareto_flags(groups: pd.DataFrame, cost: str, metric: str) -> pd.Series:
    """On the Pareto front of the groups trained the same way (``setting``): a run with more
    data or epochs never pushes another off its front."""
    flags = pd.Series(False, index=groups.index)
    for _, part in groups.groupby("setting", sort=False):
        flags[part.index] = pareto_mask(part[cost], part[metric])
    return flags


@dataclass(frozen=True)
class Power:
    """What one dataset's seeds can tell apart with a paired t-test (see ``dataset_power``)."""

    sigma_d: float  # points: the std of one seed's difference between two groups
    source: str  # "paired", "groups" (no seeds pair up) or "" (no spread measured)
    pooled: int  # how many comparisons (paired) or groups the spread is pooled over
    spread: float  # their pooled std: sigma_d itself (paired), sigma_d / √2 (groups)
    n: int  # seeds: the fewest any of them has
    detectable: float  # points: the minimum detectable difference with n seeds
    needed: int | None  # seeds to detect TARGET_DIFFERENCE; None: more than MOST_SEEDS


def dataset_power(groups: pd.DataFrame, metric: str) -> Power:
    """The spread of a per-seed difference: the pooled std of the per-seed differences of the
    groups paired with their vanilla student, else √2 × the pooled std within the student
    groups (two independent seeds); then ``minimum_detectable_difference`` with the fewest
    seeds any of them has and ``seeds_needed`` for TARGET_DIFFERENCE points."""
    paired = groups[groups["pairs"] >= 2]
    students = groups[
        (groups["role"] != "teacher") & (groups["n"] >= 2) & groups[f"{metric}_std"].notna()
    ]
    if len(paired):
        source, counts, spread = "paired", paired["pairs"], paired["pairs_std"]
    elif len(students):
        source, counts, spread = "groups", students["n"], students[f"{metric}_std"]
    else:
        return Power(math.nan, "", 0, math.nan, 0, math.nan, None)
    pooled = pooled_std(counts.tolist(), spread.tolist())
    sigma_d = pooled if source == "paired" else math.sqrt(2) * pooled
    n = int(counts.min())
    return Power(
        sigma_d,
        source,
        len(counts),
        pooled,
        n,
        minimum_detectable_difference(sigma_d, n),
        seeds_needed(sigma_d, TARGET_DIFFERENCE),
    )


# ---------------------------------------------------------------------------------------------
# One dataset


@dataclass
class DatasetReport:
    """Everything the report shows for one dataset."""

    name: str
    metric: str  # the headline metric: gains, tests, Pareto fronts and plots use it
    metrics: list[str]
    runs: pd.DataFrame
    groups: pd.DataFrame  # table order
    history: pd.DataFrame  # per-epoch validation metrics, with each run's group label
    power: Power  # of the headline metric
    within: float  # points: the convergence threshold the runs were judged by

    @property
    def slug(self) -> str:
        return slugify(self.name)


def analyse(
    name: str,
    runs: pd.DataFrame,
    history: pd.DataFrame,
    metric: str | None,
    within: float = CONVERGED_WITHIN,
) -> DatasetReport:
    """Group one dataset's runs, compare each group with its vanilla student, measure the
    power of its seeds, mark the Pareto fronts and put the groups in table order. The headline
    ``metric`` falls back to the one the runs selected their best epoch by where this dataset
    does not record it; ``within`` is the threshold ``runs_frame`` judged convergence by."""
    metrics = metric_columns(runs)
    metric = metric if metric in metrics else headline_metric(runs, metrics)
    groups = add_gains(summarise(runs, metrics), runs, metric)
    groups["setting"] = groups["recipe"].map(setting)
    groups["pareto_gflops"] = pareto_flags(groups, "gflops", metric)
    groups["pareto_params"] = pareto_flags(groups, "params_m", metric)
    groups = table_order(groups, metric)
    groups["method_key"] = [
        with_variant(m, v) for m, v in zip(groups["method"], groups["variant"], strict=True)
    ]
    groups["label"] = point_labels(groups)
    runs = runs.merge(groups[[*GROUP, "label"]], on=GROUP)
    labelled = history.merge(runs[["run_id", "label"]], on="run_id")
    power = dataset_power(groups, metric)
    return DatasetReport(name, metric, metrics, runs, groups, labelled, power, within)


def headline_metric(runs: pd.DataFrame, metrics: Sequence[str]) -> str:
    """The validation metric the runs selected their best epoch by (most common), else acc."""
    chosen = runs["select"].mode()
    return chosen.iloc[0] if len(chosen) and chosen.iloc[0] in metrics else metrics[0]


def table_order(groups: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Teachers first; then per student (largest first) its vanilla row, then per teacher its
    methods, best ``metric`` first."""
    key = pd.DataFrame(
        {
            "not_teacher": groups["role"] != "teacher",
            "params": -groups["params_m"],
            "student": groups["student"],
            "has_teacher": groups["teacher"] != "",
            "teacher": groups["teacher"],
            "score": -groups[metric].fillna(-math.inf),
            "method": groups["method"],
            "variant": groups["variant"],
        }
    )
    order = key.sort_values(list(key.columns), kind="stable").index
    return groups.loc[order].reset_index(drop=True)


def point_labels(groups: pd.DataFrame) -> pd.Series:
    """What a plot calls each group: the method (and student, when several share a dataset)."""
    several = groups.loc[groups["role"] != "teacher", "student"].nunique() > 1
    labels = []
    for _, row in groups.iterrows():
        if row["role"] == "teacher":
            labels.append(with_variant(f"teacher: {row['student']}", row["variant"]))
        elif several:
            via = f" ← {row['teacher']}" if row["teacher"] else ""
            labels.append(f"{row['student']}{via}: {row['method_key']}")
        else:
            labels.append(row["method_key"])
    return pd.Series(labels, index=groups.index)


def with_variant(method: str, variant: str) -> str:
    return f"{method} {{{variant}}}" if variant else method


def metric_label(metric: str) -> str:
    """``auc`` → ``AUC``; ``auc_<kind>`` (reals vs one kind of fake) → ``AUC <kind>``."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    return f"AUC {metric.removeprefix('auc_')}" if metric.startswith("auc_") else metric


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "data"


# ---------------------------------------------------------------------------------------------
# References


def load_references(folder: Path | None) -> pd.DataFrame:
    """Published numbers (``*.csv`` in ``folder``; schema in results/references/README.md) in
    long form: dataset, metric, teacher, student, method, published, source."""
    columns = ["dataset", "metric", "teacher", "student", "method", "published", "source"]
    if folder is None or not Path(folder).is_dir():
        return pd.DataFrame(columns=columns)
    parts = [reference_rows(path) for path in sorted(Path(folder).glob("*.csv"))]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def reference_rows(path: Path) -> pd.DataFrame:
    keys = ["dataset", "metric", "teacher", "student"]
    wide = pd.read_csv(path, comment="#", dtype={k: str for k in keys}, skipinitialspace=True)
    missing = [k for k in keys if k not in wide.columns]
    if missing:
        raise ReportInputError(f"{path}: missing columns {', '.join(missing)} (see README.md)")
    long = wide.melt(id_vars=keys, var_name="method", value_name="published")
    long = long.dropna(subset=["published"])
    alone = long["method"].isin(["T", "S"])
    long.loc[long["method"] == "T", "student"] = long["teacher"]
    long.loc[alone, "teacher"] = ""
    long.loc[alone, "method"] = "vanilla"
    long = long.assign(
        published=pd.to_numeric(long["published"], errors="coerce"), source=path.name
    )
    key = [*keys, "method"]
    conflicts = long.groupby(key)["published"].nunique()
    if (conflicts > 1).any():
        where = " / ".join(conflicts[conflicts > 1].index[0])
        raise ReportInputError(f"{path}: two different published values for {where}")
    return long.drop_duplicates(subset=key)


def reference_deltas(
    groups: pd.DataFrame, references: pd.DataFrame, tolerance: float
) -> pd.DataFrame:
    """Our groups next to matching published values: ours, published, delta, within tolerance.

    A reference row matches on dataset (``data.name`` or the report's dataset label), teacher,
    student and method names.
    """
    if groups.empty or references.empty:
        return pd.DataFrame()
    rows = []
    for _, ref in references.iterrows():
        same = groups[
            ((groups["data_name"] == ref["dataset"]) | (groups["dataset"] == ref["dataset"]))
            & (groups["teacher_name"] == ref["teacher"])
            & (groups["student_name"] == ref["student"])
            & (groups["method_name"] == ref["method"])
        ]
        for _, ours in same.iterrows():
            mean = ours.get(ref["metric"], math.nan)
            rows.append(
                {
                    "dataset": ours["dataset"],
                    "teacher": ours["teacher"],
                    "student": ours["student"],
                    "method": ours["method"],
                    "variant": ours["variant"],
                    "metric": ref["metric"],
                    "n": ours["n"],
                    "ours": mean,
                    "ours_std": ours.get(f"{ref['metric']}_std", math.nan),
                    "published": ref["published"],
                    "delta": mean - ref["published"],
                    "within": bool(abs(mean - ref["published"]) <= tolerance),
                    "source": ref["source"],
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Writing the folder


@dataclass
class Report:
    """What was written where, for the command line to print."""

    out: Path
    runs: int
    finished: int
    failed: int
    duplicates: int
    datasets: list[str] = field(default_factory=list)
    references: int = 0
    skipped: list[str] = field(default_factory=list)  # files that are not usable run results

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def write_report(
    records: Sequence[dict],
    out: Path,
    references: Path | None = REFERENCES,
    tolerance: float = 1.0,
    metric: str | None = None,
    sources: Sequence[str] = (),
    skipped: Sequence[str] = (),
    within: float = CONVERGED_WITHIN,
) -> Report:
    """Write README.md, index.html, runs.csv, tables/ and plots/ for ``records`` into ``out``.

    ``skipped`` lines (files ``load_runs`` left out) are listed in the README. A run is
    converged when its validation selection metric moved less than ``within`` points over the
    last quarter of its epochs. Only these files are written (and overwritten); nothing else
    in ``out`` is touched.
    """
    from kdbench.report_plots import dataset_figures, save_figure
    from kdbench.report_render import (
        dataset_section,
        dataset_table,
        failed_section,
        html_page,
        readme,
        reference_section,
        reference_table,
        skipped_section,
        table_csv,
    )

    records, duplicates = unique_runs(records)
    if not records:
        raise ReportInputError("no run results to report")
    runs, failed = runs_frame(records, within), failed_frame(records)
    history = history_frame(records)
    reports = [
        analyse(name, part, history, metric, within)
        for name, part in runs.groupby("dataset", sort=True)
    ]
    if metric and reports and all(r.metric != metric for r in reports):
        raise ReportInputError(f"no dataset records the metric {metric!r}")
    deltas = reference_deltas(
        pd.concat([r.groups for r in reports]) if reports else pd.DataFrame(),
        load_references(references),
        tolerance,
    )
    out = Path(out)
    check_writable(out)
    for folder in ("tables", "plots"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    all_runs_csv(runs, failed).to_csv(out / "runs.csv", index=False)
    if reports:
        power_frame(reports).to_csv(out / "tables" / "power.csv", index=False)
    sections = []
    for report in reports:
        table = dataset_table(report)
        write_tables(out / "tables", report.slug, table, table_csv(report))
        plots = {
            kind: save_figure(fig, out / "plots" / f"{report.slug}-{kind}")
            for kind, fig in dataset_figures(report).items()
        }
        sections.append(dataset_section(report, table, plots))
    if not deltas.empty:
        table = reference_table(deltas, tolerance)
        write_tables(out / "tables", "references", table, deltas)
        sections.append(reference_section(table))
    if not failed.empty:
        sections.append(failed_section(failed))
    names = [r.name for r in reports]
    if skipped:
        sections.append(skipped_section(list(skipped)))
    counts = len(records), len(runs), len(failed), duplicates
    summary = Report(out, *counts, names, len(deltas), list(skipped))
    page = readme(summary, sources, sections)
    (out / "README.md").write_text(page)
    (out / "index.html").write_text(html_page(page, TITLE))
    return summary


def check_writable(out: Path) -> None:
    """Refuse to overwrite a README.md or index.html that an earlier report did not write."""
    for name, mark in (("README.md", TITLE), ("index.html", f"<title>{TITLE}</title>")):
        page = out / name
        if page.is_file() and mark not in page.read_text(errors="replace")[:2000]:
            raise ReportInputError(
                f"{page} exists and is not a kdbench report: choose another --out folder"
            )


def all_runs_csv(runs: pd.DataFrame, failed: pd.DataFrame) -> pd.DataFrame:
    done = runs.drop(columns="recipe").assign(status="done", error="")
    return pd.concat([done, failed], ignore_index=True)[[*done.columns]]


def power_frame(reports: Sequence[DatasetReport]) -> pd.DataFrame:
    """One row per dataset: its headline metric and the fields of its ``Power``."""
    rows = [{"dataset": r.name, "metric": r.metric} | asdict(r.power) for r in reports]
    return pd.DataFrame(rows).astype({"needed": "Int64"})


def write_tables(folder: Path, stem: str, table, numbers: pd.DataFrame) -> None:
    """A table as ``stem``.md and ``stem``.tex, and its numbers at full precision as .csv."""
    from kdbench.report_render import to_latex, to_markdown

    numbers.to_csv(folder / f"{stem}.csv", index=False)
    (folder / f"{stem}.md").write_text(to_markdown(table) + "\n")
    (folder / f"{stem}.tex").write_text(to_latex(table, label=f"tab:{stem}"))
