"""Groups against each other over seeds: each group's gain over its vanilla student with a
paired test, every pair of student groups, and the power of the seeds a dataset has."""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import asdict, dataclass

import pandas as pd

from kdbench.report.frames import GROUP, same_recipe
from kdbench.report.stats import (
    CONFIDENCE,
    TARGET_DIFFERENCE,
    minimum_detectable_difference,
    pooled_std,
    seeds_needed,
)


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
