"""One dataset's groups: mean, spread and intervals over seeds, gains over the vanilla
student with paired tests, the Pareto front, the power of the seeds it has."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kdbench.report.columns import Column, table_columns
from kdbench.report.compare import PAIR_COLUMNS, Power, add_gains, dataset_power, pairwise
from kdbench.report.frames import GROUP, merged, metric_columns, setting
from kdbench.report.labels import with_variant
from kdbench.report.stats import CONVERGED_WITHIN, t_half_width

IDENTITY = ["role", "data_name", "teacher_name", "student_name", "method_name"]


def summarise(runs: pd.DataFrame, columns: Sequence[Column]) -> pd.DataFrame:
    """One row per group: its role, names and merged recipe, and the aggregation of each
    column that has one (``n``, seeds, how many ``converged``, mean cost, and per metric
    ``<metric>`` / ``<metric>_std``, the sample standard deviation over seeds, NaN for one
    seed / ``<metric>_ci95``, the half-width of the 95% t-interval of the mean, NaN for one
    seed)."""
    aggregations = {name: (name, "first") for name in IDENTITY}
    aggregations["recipe"] = ("recipe", merged)
    for column in columns:
        if column.group is None:
            continue
        source, how = (
            column.group if isinstance(column.group, tuple) else (column.name, column.group)
        )
        aggregations[column.name] = (source, how)
        if column.spread:
            aggregations[f"{column.name}_std"] = (source, "std")
            aggregations[f"{column.name}_ci95"] = (source, half_width)
    return runs.groupby(GROUP, sort=False).agg(**aggregations).reset_index()


def half_width(values: pd.Series) -> float:
    return t_half_width(values.std(), values.count())


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
    pairs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PAIR_COLUMNS))

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
    groups = add_gains(summarise(runs, table_columns(metrics, metric)), runs, metric)
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
    pairs = pairwise(groups, runs, metric)
    return DatasetReport(name, metric, metrics, runs, groups, labelled, power, within, pairs)


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


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "data"
