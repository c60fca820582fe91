"""The report's columns: one entry per column of a dataset's table, from which every table is
made (terminal, Markdown, LaTeX) and the CSV of its numbers. A new column is one entry in
COLUMNS (its value per run, how a group of seeds aggregates it, how a cell shows it).

Plain Python (no pandas): a group row is anything indexable by column name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kdbench.report.labels import LOWER_IS_BETTER, metric_label, with_variant

Row = Mapping[str, Any]  # one group of runs: a row of DatasetReport.groups
NOT_CONVERGED = "†"
STARS = ((0.01, "**"), (0.05, "*"))
TERMINAL_METRICS = ("acc", "top5", "auc", "video_acc", "video_auc")  # what a terminal has room for


@dataclass(frozen=True)
class Column:
    """One column of a dataset's table.

    - ``name``: its key in the runs frame (with ``run``), the groups frame and the CSV;
    - ``header``: its heading in the shown tables; None: in the CSV only;
    - ``cell``: a group's value as the tables show it;
    - ``run``: one finished run's value, read from its record (None: the frames or the
      analysis compute the column);
    - ``group``: how a group's runs aggregate (a pandas aggregation such as ``"mean"``, or
      ``(source column, aggregation)``); None: computed per group by the analysis;
    - ``spread``: also ``<name>_std`` and ``<name>_ci95`` over the group's seeds;
    - ``fields``: its columns in the CSV (default: ``name``, and the spread's);
    - ``optional``: shown only where some group has a value; ``best``: the best student's
      cell is bold (the smallest value where ``lower`` is set, as for EER); ``terminal``: also
      in the table the command line prints (which keeps to the columns a terminal has room
      for).
    """

    name: str
    header: str | None
    cell: Callable[[Row], str] = lambda row: ""
    run: Callable[[dict], Any] | None = None
    group: str | tuple[str, Any] | None = None
    spread: bool = False
    fields: tuple[str, ...] = ()
    align: str = "r"
    optional: bool = False
    best: bool = False
    lower: bool = False
    terminal: bool = True

    def csv_fields(self) -> tuple[str, ...]:
        if self.fields:
            return self.fields
        return (self.name, f"{self.name}_std", f"{self.name}_ci95") if self.spread else (self.name,)


def student_cost(field: str, scale: float = 1.0) -> Callable[[dict], float]:
    """A run's value: the deployed student's cost ``field`` (``params``, ``flops``, where
    measured ``latency_ms``; else NaN) divided by ``scale``."""
    return lambda record: record["cost"]["student"].get(field, math.nan) / scale


def fixed(name: str, digits: int) -> Callable[[Row], str]:
    """A cell: the group's ``name`` with ``digits`` decimals (— where missing)."""
    return lambda g: number(g[name], digits)


def small(name: str) -> Callable[[Row], str]:
    """A cell with 3 decimals, or 2 significant digits below 0.01 (0.0012, not 0.001)."""
    return lambda g: number(g[name], 3) if not 0 < abs(g[name]) < 0.01 else f"{g[name]:.2g}"


def method_cell(g: Row) -> str:
    return with_variant(
        "vanilla (teacher)" if g["role"] == "teacher" else g["method"], g["variant"]
    )


def seed_list(seeds) -> str:
    return " ".join(str(seed) for seed in sorted(seeds))


COLUMNS = [
    Column("method", "method", method_cell, align="l"),
    Column("student", "student", lambda g: g["student"], align="l"),
    Column("teacher", "teacher", lambda g: g["teacher"] or "—", align="l", terminal=False),
    Column("n", "n", lambda g: str(g["n"]), group=("seed", "size")),
    Column("converged", "conv.", lambda g: converged(g["converged"], g["n"]), group="sum"),
    Column("seeds", None, group=("seed", seed_list)),
    Column("params_m", "params (M)", fixed("params_m", 2), student_cost("params", 1e6), "mean"),
    Column("gflops", "GFLOPs", small("gflops"), student_cost("flops", 1e9), "mean"),
    Column(
        "latency_ms",
        "latency (ms)",
        fixed("latency_ms", 2),
        student_cost("latency_ms"),
        "mean",
        optional=True,
    ),
]
# then one column per metric (metric_column) and the gain in the headline metric
PARETO = [Column("pareto_gflops", None), Column("pareto_params", None)]


def metric_column(metric: str, headline: bool) -> Column:
    """A test metric (%): mean ± std over seeds, the headline one with its interval; on the
    terminal the usual metrics only (not AP, EER or the AUC per kind of fake)."""

    def cell(g: Row) -> str:
        text = mean_std(g[metric], g[f"{metric}_std"])
        return text + interval(g[f"{metric}_ci95"]) if headline else text

    header = f"{metric_label(metric)} (%)"
    terminal = metric in TERMINAL_METRICS
    lower = metric in LOWER_IS_BETTER
    return Column(
        metric, header, cell, group="mean", spread=True, best=True, lower=lower, terminal=terminal
    )


def gain_column(metric: str) -> Column:
    """Δ: the gain over the vanilla student in points, its significance and interval."""
    return Column(
        "delta",
        f"Δ {metric_label(metric)}",
        lambda g: signed(g["delta"]) + stars(g["p_value"]) + interval(g["delta_ci95"]),
        fields=("delta", "delta_ci95", "p_value", "test", "pairs", "pairs_std"),
        best=True,
    )


def table_columns(metrics: Sequence[str], headline: str) -> list[Column]:
    """Every column of a dataset's table and CSV, in order."""
    shown = [metric_column(m, m == headline) for m in metrics]
    return [*COLUMNS, *shown, gain_column(headline), *PARETO]


def run_values(record: dict) -> dict:
    """A finished run's value of every column that reads one from the record."""
    return {c.name: c.run(record) for c in COLUMNS if c.run}


def run_value_names() -> list[str]:
    return [c.name for c in COLUMNS if c.run]


def converged(count: int, n: int) -> str:
    return f"{count}/{n}" + (f" {NOT_CONVERGED}" if count < n else "")


def mean_std(mean: float, std: float, digits: int = 2) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def number(value: float, digits: int = 2) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def signed(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:+.2f}"


def stars(p_value: float) -> str:
    return next((mark for level, mark in STARS if p_value < level), "")


def interval(half_width: float) -> str:
    return "" if math.isnan(half_width) else f" [±{half_width:.2f}]"
