"""The report's tables as one model (``Table``: cells as display text), built from the column
list (``columns.COLUMNS``); ``render`` writes a Table as Markdown, LaTeX or a terminal table."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from kdbench.report.analysis import DatasetReport
from kdbench.report.columns import (
    NOT_CONVERGED,
    Column,
    mean_std,
    signed,
    table_columns,
)
from kdbench.report.frames import GROUP
from kdbench.report.labels import metric_label, with_variant
from kdbench.report.stats import CONFIDENCE

FLOPS_NOTE = "fvcore counts one multiply-add as one flop (GFLOPs = GMACs)"
TEST_NOTE = (
    "two-sided paired t-test over the seeds shared with the vanilla student "
    "(Welch's t-test where fewer than 2 seeds pair up), no correction for multiple comparisons"
)
CI_NOTE = (
    f"[±h]: half-width of the {CONFIDENCE:.0%} t-interval over seeds (of the mean; for Δ, of "
    "the mean per-seed difference where seeds pair up, else Welch's)"
)

TERMINAL_CAPTION = (
    "test split at the best validation epoch; mean ± std over n seeds (%), [±h]: 95% "
    "t-interval; conv.: converged runs of n; Δ: gain over the vanilla student in points, "
    "* p < 0.05, ** p < 0.01 (paired t-test); bold: best student. Every column, and what it "
    "means: the report."
)


@dataclass
class Table:
    """Cells as display text; ``align`` is l/r per column; ``bold`` holds (row, column)."""

    columns: list[str]
    rows: list[list[str]]
    align: str
    caption: str = ""
    bold: set[tuple[int, int]] = field(default_factory=set)


def dataset_table(report: DatasetReport, terminal: bool = False) -> Table:
    """The paper table of one dataset: one row per group, one column per shown entry of the
    column list (seeds and how many converged, cost, metrics as mean ± std over n seeds, the
    headline one with its interval, the gain with its interval and mark); bold: the best
    student per metric. ``terminal``: the columns marked for the terminal, a short caption."""
    g = report.groups
    columns = shown_columns(report, terminal)
    rows = [[column.cell(row) for column in columns] for _, row in g.iterrows()]
    best = {j: column.lower for j, column in enumerate(columns) if column.best}
    bold = best_cells(rows, g["role"] != "teacher", best)
    caption = TERMINAL_CAPTION if terminal else paper_caption(report)
    headers = [column.header for column in columns]
    return Table(headers, rows, "".join(column.align for column in columns), caption, bold)


def shown_columns(report: DatasetReport, terminal: bool = False) -> list[Column]:
    """The columns a table shows: those with a header (on the terminal, those marked for
    it), an optional one where a group has a value."""
    g = report.groups
    return [
        column
        for column in table_columns(report.metrics, report.metric)
        if column.header is not None
        and (column.terminal or not terminal)
        and not (column.optional and g[column.name].isna().all())
    ]


def paper_caption(report: DatasetReport) -> str:
    return (
        f"{report.name}: test split at the best validation epoch; mean ± std over n seeds (%); "
        f"{CI_NOTE}. conv.: converged runs of n (a run converged when "
        f"{convergence_rule(report.within)}); {NOT_CONVERGED}: not all. "
        f"Params and GFLOPs (per image) of the deployed student; {FLOPS_NOTE}. "
        f"Δ: gain over the vanilla student in points; * p < 0.05, ** p < 0.01, {TEST_NOTE}. "
        "Bold: best student per column."
    )


def convergence_rule(within: float) -> str:
    return (
        f"its validation selection metric (train.select) moved less than {within:g} points "
        "over the last quarter of its epochs, at least the last 2"
    )


def table_csv(report: DatasetReport) -> pd.DataFrame:
    """The table's numbers at full precision (metrics and Δ in %), one row per group: the
    group's keys and role, then every column's fields."""
    fields = [f for c in table_columns(report.metrics, report.metric) for f in c.csv_fields()]
    keys = [*GROUP, "role"]
    out = report.groups[[*keys, *(f for f in dict.fromkeys(fields) if f not in keys)]]
    metric = report.metric
    names = {"delta": f"delta_{metric}", "delta_ci95": f"delta_{metric}_ci95"}
    return out.rename(columns=names | {"p_value": f"p_{metric}"})


def reference_table(deltas: pd.DataFrame, tolerance: float) -> Table:
    columns = ["dataset", "teacher", "student", "method", "metric", "n"]
    columns += ["ours (%)", "published (%)", "Δ", f"within ±{tolerance:g}"]
    rows, bold = [], set()
    for i, (_, d) in enumerate(deltas.iterrows()):
        rows.append(
            [
                d["dataset"],
                d["teacher"] or "—",
                d["student"],
                with_variant(d["method"], d["variant"]),
                metric_label(d["metric"]),
                str(d["n"]),
                mean_std(d["ours"], d["ours_std"]),
                f"{d['published']:.2f}",
                signed(d["delta"]),
                "yes" if d["within"] else "no",
            ]
        )
        if not d["within"]:
            bold.add((i, len(columns) - 1))
    caption = (
        f"Ours vs published; Δ in points; bold 'no': further than {tolerance:g} points from the "
        f"published value. Sources: {', '.join(sorted(set(deltas['source'])))} "
        "(benchmark/references)."
    )
    return Table(columns, rows, "llllll" + "r" * 4, caption, bold)


def failed_table(failed: pd.DataFrame) -> Table:
    rows = [[str(v) for v in row] for row in failed.itertuples(index=False)]
    return Table(list(failed.columns), rows, "l" * len(failed.columns))


def best_cells(rows: list[list[str]], eligible: Iterable[bool], columns: Mapping[int, bool]) -> set:
    """(row, column) of the largest displayed value per column among ``eligible`` rows (the
    smallest in the columns ``columns`` maps to True)."""
    eligible = list(eligible)
    bold = set()
    for j, lower in columns.items():
        values = {i: leading_number(rows[i][j]) for i in range(len(rows)) if eligible[i]}
        values = {i: v for i, v in values.items() if not math.isnan(v)}
        if values:
            top = (min if lower else max)(values.values())
            bold |= {(i, j) for i, v in values.items() if v == top}
    return bold


def leading_number(text: str) -> float:
    found = re.match(r"[+-]?\d+(\.\d+)?", text)
    return float(found.group()) if found else math.nan
