"""One dataset's groups: mean, spread and intervals over seeds, gains over the vanilla
student with paired tests, the Pareto front, the power of the seeds it has."""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from kdbench.report.frames import GROUP, METRIC_LABELS, merged, metric_columns, same_recipe, setting
from kdbench.report.stats import (
    CONFIDENCE,
    CONVERGED_WITHIN,
    TARGET_DIFFERENCE,
    minimum_detectable_difference,
    pooled_std,
    seeds_needed,
    t_half_width,
)


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
    pairs = pairwise(groups, runs, metric)
    return DatasetReport(name, metric, metrics, runs, groups, labelled, power, within, pairs)


def pairwise(groups: pd.DataFrame, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Every pair of student groups of one student (teachers left out), in table order: the
    mean per-seed difference of ``metric`` (row minus column), its paired t-test, the spread of
    the differences and the smallest difference that spread lets those seeds detect. Methods
    that share seeds often differ far less from each other than from the vanilla student, so
    a pair can be resolved where the comparison with vanilla cannot."""
    means = seed_means(runs, metric)
    students = groups[groups["role"] != "teacher"]
    rows = []
    for (_, a), (_, b) in itertools.combinations(students.iterrows(), 2):
        if a["student"] != b["student"]:
            continue
        ours, theirs = means.get(tuple(a[GROUP])), means.get(tuple(b[GROUP]))
        if ours is None or theirs is None:
            continue
        common = ours.index.intersection(theirs.index)
        result = compare(ours[common], theirs[common])
        rows.append(
            {
                "a": a["method_key"],
                "b": b["method_key"],
                "student": a["student"],
                "delta": float((ours[common] - theirs[common]).mean()) if len(common) else math.nan,
                "p_value": result.p_value,
                "pairs": result.pairs,
                "sigma_d": result.pairs_std,
                "detectable": minimum_detectable_difference(result.pairs_std, result.pairs),
            }
        )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


PAIR_COLUMNS = ["a", "b", "student", "delta", "p_value", "pairs", "sigma_d", "detectable"]


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
