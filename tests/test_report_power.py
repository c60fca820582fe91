"""The report's convergence flag, confidence intervals and power, against hand values, scipy
computed here and simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import DUAL, parse_markdown, record, row, write_runs

from kdbench.cli import main
from kdbench.report import analyse, history_frame, runs_frame, write_report
from kdbench.report.render import to_markdown
from kdbench.report.stats import (
    last_quarter_movement,
    minimum_detectable_difference,
    paired_power,
    pooled_std,
    seeds_needed,
)
from kdbench.report.tables import dataset_table

FLAT = [0.50, 0.60, 0.65, 0.700, 0.702, 0.701, 0.703, 0.704]  # last 2 epochs move 0.1 points
RISING = [0.50, 0.55, 0.60, 0.62, 0.64, 0.66, 0.68, 0.70]  # last 2 epochs move 2 points


def with_curve(run: dict, curve: list[float], metric: str = "auc") -> dict:
    """``run`` whose validation ``metric`` follows ``curve`` (one value per epoch)."""
    assert len(curve) == len(run["history"])
    for entry, value in zip(run["history"], curve, strict=True):
        entry["val"][metric] = value
    return run


def curve_runs() -> list[dict]:
    """A teacher still rising; vanilla converged (3 seeds); kd with seed 2 still rising."""
    runs = [with_curve(record("dual-branch", auc=0.90, epochs=8), RISING)]
    runs += [with_curve(record("resnet10t", seed=s, auc=0.7, epochs=8), FLAT) for s in range(3)]
    runs += [
        with_curve(record("resnet10t", "kd", seed=s, auc=0.75, teacher=DUAL, epochs=8), curve)
        for s, curve in enumerate([FLAT, FLAT, RISING])
    ]
    return runs


def report_of(records: list[dict], within: float = 0.5):
    runs = runs_frame(records, within)
    return analyse("synthff lq", runs, history_frame(records), None, within)


# --- convergence -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("curve", "movement"),
    [
        ([50.0], math.nan),  # one epoch: never converged
        ([50.0, 50.3], 0.3),  # 2 epochs: both
        ([40.0, 50.0, 50.2], 0.2),  # 3 epochs: the last 2
        ([40.0, 41.0, 45.0, 50.0, 50.4], 0.4),  # 5 epochs: ceil(5/4) = 2
        ([0.0] * 6 + [1.0, 1.2, 1.1], 0.2),  # 9 epochs: the last 3
        ([0.0] * 12 + [5.0, 5.6, 5.1, 5.3], 0.6),  # 16 epochs: the last 4
        ([50.0, math.nan, 50.0], math.nan),  # a missing value in the window
    ],
)
def test_last_quarter_movement_uses_the_last_quarter_of_the_epochs(curve, movement):
    assert last_quarter_movement(curve) == pytest.approx(movement, nan_ok=True)


def test_runs_and_groups_are_flagged_by_their_validation_curve():
    report = report_of(curve_runs())
    runs = report.runs.set_index("label")
    assert runs.loc["vanilla", "converged"].tolist() == [True, True, True]
    assert runs.loc["vanilla", "val_movement"].tolist() == pytest.approx([0.1] * 3)
    assert sorted(runs.loc["kd", "converged"].tolist()) == [False, True, True]
    cells = {r["method"]: r["conv."] for r in parse_markdown(table_text(report))}
    assert cells == {"vanilla (teacher)": "0/1 †", "vanilla": "3/3", "kd": "2/3 †"}


def table_text(report) -> str:
    return to_markdown(dataset_table(report))


def test_the_threshold_is_an_option():
    report = report_of(curve_runs(), within=2.5)  # rising curves move 2 points
    assert report.groups["converged"].tolist() == report.groups["n"].tolist()
    assert "moved less than 2.5 points" in dataset_table(report).caption


def test_convergence_follows_the_metric_the_run_selected_by():
    flat_acc = record("resnet10t", auc=0.7, epochs=8)
    flat_acc["config"]["train"]["select"] = "acc"
    with_curve(with_curve(flat_acc, FLAT, "acc"), RISING, "auc")
    rising_acc = with_curve(
        with_curve(record("resnet10t", seed=1, auc=0.7, epochs=8), FLAT), RISING, "acc"
    )
    frame = runs_frame([flat_acc, rising_acc])
    assert frame["converged"].tolist() == [True, True]  # acc for the first, auc for the second


def test_readme_runs_csv_and_tables_carry_the_flag(tmp_path):
    write_report(curve_runs(), tmp_path)
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert runs["converged"].sum() == 5 and len(runs) == 7
    table = pd.read_csv(tmp_path / "tables" / "synthff-lq.csv")
    assert table["converged"].tolist() == [0, 3, 2]
    assert r"2/3 \dag{}" in (tmp_path / "tables" / "synthff-lq.tex").read_text()
    readme = (tmp_path / "README.md").read_text()
    assert "| kd | resnet10t | dual-branch | 3 | 2/3 † |" in readme
    assert "2 of 7 runs did not converge: teacher: dual-branch (0/1 converged), kd" in readme


def test_cli_converged_within(tmp_path):
    results = write_runs(tmp_path / "results", curve_runs())
    out = tmp_path / "out"
    assert main(["report", str(results), "--out", str(out), "--converged-within", "2.5"]) == 0
    assert pd.read_csv(out / "runs.csv")["converged"].all()
    assert "all 7 runs converged" in (out / "README.md").read_text()


# --- confidence intervals --------------------------------------------------------------------

VANILLA = {0: 0.60, 1: 0.62, 2: 0.64, 3: 0.61, 4: 0.66}
KD = {0: 0.66, 1: 0.70, 2: 0.69, 3: 0.64, 4: 0.72}


def t_half(values: list[float]) -> float:
    values = np.asarray(values)
    n = len(values)
    return stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)


def paired_records(kd_seeds: dict[int, float]) -> list[dict]:
    runs = [record("resnet10t", seed=s, auc=v) for s, v in VANILLA.items()]
    return runs + [
        record("resnet10t", "kd", seed=s, auc=v, teacher=DUAL) for s, v in kd_seeds.items()
    ]


def test_intervals_of_means_and_of_paired_differences():
    report = report_of(paired_records(KD))
    vanilla, kd = row(report.groups, "vanilla"), row(report.groups, "kd")
    ours = [100 * v for v in KD.values()]
    theirs = [100 * v for v in VANILLA.values()]
    assert vanilla["auc_ci95"] == pytest.approx(t_half(theirs))
    assert kd["auc_ci95"] == pytest.approx(t_half(ours))
    differences = [a - b for a, b in zip(ours, theirs, strict=True)]
    assert kd["delta_ci95"] == pytest.approx(t_half(differences))
    assert (kd["pairs"], kd["pairs_std"]) == (5, pytest.approx(np.std(differences, ddof=1)))
    (shown,) = [r for r in parse_markdown(table_text(report)) if r["method"] == "kd"]
    assert (
        shown["AUC (%)"]
        == f"{np.mean(ours):.2f} ± {np.std(ours, ddof=1):.2f} [±{t_half(ours):.2f}]"
    )
    assert shown["Δ AUC"].endswith(f" [±{t_half(differences):.2f}]")


def test_welch_interval_when_seeds_do_not_pair():
    kd_seeds = {s + 10: v for s, v in KD.items() if s < 4}  # 4 seeds, none shared
    kd = row(report_of(paired_records(kd_seeds)).groups, "kd")
    ours = np.array([100 * v for v in kd_seeds.values()])
    theirs = np.array([100 * v for v in VANILLA.values()])
    a, b = ours.var(ddof=1) / len(ours), theirs.var(ddof=1) / len(theirs)
    df = (a + b) ** 2 / (a**2 / (len(ours) - 1) + b**2 / (len(theirs) - 1))
    assert kd["test"] == "Welch t" and kd["pairs"] == 0
    assert kd["delta_ci95"] == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(a + b))


def test_one_seed_has_no_interval():
    report = report_of(
        [record("resnet10t", auc=0.6), record("resnet10t", "kd", auc=0.7, teacher=DUAL)]
    )
    assert report.groups["auc_ci95"].isna().all() and report.groups["delta_ci95"].isna().all()
    assert "[±" not in table_text(report).split("\n\n")[0]


# --- power -----------------------------------------------------------------------------------


def test_power_is_alpha_without_a_difference():
    assert paired_power(0.0, 2.0, 5) == pytest.approx(0.05)


def test_seeds_needed_matches_the_textbook():
    # Cohen's paired dz = 0.5 needs 34 pairs and dz = 0.8 needs 15 (G*Power, α = .05
    # two-sided, power .8); a normal approximation would say 32 and 13
    assert seeds_needed(2.0, 1.0) == 34
    assert seeds_needed(2.5, 2.0) == 15
    assert seeds_needed(math.nan, 2.0) is None


def test_minimum_detectable_difference_by_simulation():
    """σ_d = 2 points, n = 5: paired t-tests of differences drawn with the detectable mean
    reject at α = 0.05 in 80% of 40,000 experiments (± 0.6 points, ~3 standard errors)."""
    detectable = minimum_detectable_difference(2.0, 5)
    assert detectable == pytest.approx(3.364, abs=0.001)  # normal approximation: 2.51
    rng = np.random.default_rng(0)
    draws = rng.normal(detectable, 2.0, size=(40_000, 5))
    rejected = stats.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.006)


def test_minimum_detectable_difference_and_seeds_needed_agree():
    needed = seeds_needed(3.0, 2.0)
    assert minimum_detectable_difference(3.0, needed) <= 2.0
    assert minimum_detectable_difference(3.0, needed - 1) > 2.0
    assert math.isnan(minimum_detectable_difference(3.0, 1))


def test_pooled_std_by_hand():
    assert pooled_std([3, 2, 1], [1.0, 3.5, 9.0]) == pytest.approx(math.sqrt((2 + 3.5**2) / 3))
    assert math.isnan(pooled_std([1], [0.0]))


def test_dataset_power_pools_the_paired_differences():
    power = report_of(paired_records(KD)).power
    differences = [100 * (KD[s] - VANILLA[s]) for s in VANILLA]
    sigma_d = np.std(differences, ddof=1)
    assert (power.source, power.pooled, power.n) == ("paired", 1, 5)
    assert power.sigma_d == pytest.approx(sigma_d)
    assert power.detectable == pytest.approx(minimum_detectable_difference(sigma_d, 5))
    assert power.needed == seeds_needed(sigma_d, 2.0)


def test_dataset_power_without_pairs_uses_the_spread_within_groups():
    kd_seeds = {s + 10: v for s, v in KD.items() if s < 4}
    power = report_of(paired_records(kd_seeds)).power
    ours = np.std([100 * v for v in kd_seeds.values()], ddof=1)
    theirs = np.std([100 * v for v in VANILLA.values()], ddof=1)
    within = math.sqrt((3 * ours**2 + 4 * theirs**2) / 7)
    assert (power.source, power.pooled, power.n) == ("groups", 2, 4)
    assert power.sigma_d == pytest.approx(math.sqrt(2) * within)
    assert power.detectable == pytest.approx(minimum_detectable_difference(power.sigma_d, 4))


def test_readme_and_power_csv_print_the_detectable_difference(tmp_path):
    write_report(paired_records(KD), tmp_path)
    power = pd.read_csv(tmp_path / "tables" / "power.csv").iloc[0]
    sigma_d = np.std([100 * (KD[s] - VANILLA[s]) for s in VANILLA], ddof=1)
    detectable, needed = minimum_detectable_difference(sigma_d, 5), seeds_needed(sigma_d, 2.0)
    assert (power["dataset"], power["metric"], power["n"]) == ("synthff lq", "auc", 5)
    assert (power["detectable"], power["needed"]) == (pytest.approx(detectable), needed)
    readme = (tmp_path / "README.md").read_text()
    assert f"σ_d = {sigma_d:.2f} points, the pooled std of the per-seed differences" in readme
    assert "With n = 5 seeds (the fewest of them)" in readme
    assert (
        f"detects a difference of {detectable:.2f} points; 2 points need {needed} seeds" in readme
    )


# --- pairs -----------------------------------------------------------------------------------


def test_pairs_resolve_methods_that_vanilla_cannot():
    """kd and fitnets move together across seeds (fitnets = kd − 0.5 ± 0.1), vanilla does
    not: kd vs vanilla is lost in the spread, kd vs fitnets is found."""
    vanilla = [0.60, 0.75, 0.65, 0.80, 0.70]
    kd = [0.70, 0.71, 0.90, 0.72, 0.88]
    fitnets = [k - 0.005 + (0.001 if s % 2 else -0.001) for s, k in enumerate(kd)]
    runs = [record("resnet10t", seed=s, auc=a) for s, a in enumerate(vanilla)]
    runs += [record("resnet10t", "kd", seed=s, auc=a, teacher=DUAL) for s, a in enumerate(kd)]
    runs += [
        record("resnet10t", "fitnets", seed=s, auc=a, teacher=DUAL) for s, a in enumerate(fitnets)
    ]
    pairs = report_of(runs).pairs
    assert len(pairs) == 3  # each unordered pair once

    def pair(a: str, b: str) -> dict:
        row = pairs[(pairs["a"] == a) & (pairs["b"] == b)]
        if row.empty:  # listed the other way round: the difference changes sign
            row = pairs[(pairs["a"] == b) & (pairs["b"] == a)].assign(delta=lambda f: -f["delta"])
        return row.iloc[0].to_dict()

    differences = [100 * (k - f) for k, f in zip(kd, fitnets, strict=True)]
    kd_fitnets = pair("kd", "fitnets")
    assert kd_fitnets["delta"] == pytest.approx(np.mean(differences))
    assert kd_fitnets["sigma_d"] == pytest.approx(np.std(differences, ddof=1))
    assert kd_fitnets["p_value"] < 0.001 and kd_fitnets["pairs"] == 5
    assert kd_fitnets["detectable"] < 0.5
    for method in ("kd", "fitnets"):
        assert pair(method, "vanilla")["p_value"] > 0.05
        assert pair(method, "vanilla")["detectable"] > 5
