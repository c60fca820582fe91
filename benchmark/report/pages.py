"""The report as text: its tables (one model, rendered to Markdown and LaTeX booktabs) and
its pages (README.md, and index.html from the same Markdown)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from kdbench.report.analysis import DatasetReport, Power, metric_label, with_variant
from kdbench.report.frames import GROUP, TITLE
from kdbench.report.stats import ALPHA, CONFIDENCE, MOST_SEEDS, POWER, TARGET_DIFFERENCE

if TYPE_CHECKING:  # the report folder's summary; write imports this module
    from kdbench.report.write import Report

FLOPS_NOTE = "fvcore counts one multiply-add as one flop (GFLOPs = GMACs)"
TEST_NOTE = (
    "two-sided paired t-test over the seeds shared with the vanilla student "
    "(Welch's t-test where fewer than 2 seeds pair up), no correction for multiple comparisons"
)
CI_NOTE = (
    f"[±h]: half-width of the {CONFIDENCE:.0%} t-interval over seeds (of the mean; for Δ, of "
    "the mean per-seed difference where seeds pair up, else Welch's)"
)
STARS = ((0.01, "**"), (0.05, "*"))
NOT_CONVERGED = "†"
LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
LATEX_SYMBOLS = {
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "—": "--",
    "<": "$<$",
    ">": "$>$",
    "←": r"$\leftarrow$",
    "†": r"\dag{}",
}
SIGNIFICANCE = re.compile(r"^(?P<number>[+-]?\d+(?:\.\d+)?)(?P<stars>\*+)(?P<rest>.*)$")


@dataclass
class Table:
    """Cells as display text; ``align`` is l/r per column; ``bold`` holds (row, column)."""

    columns: list[str]
    rows: list[list[str]]
    align: str
    caption: str = ""
    bold: set[tuple[int, int]] = field(default_factory=set)


def dataset_table(report: DatasetReport) -> Table:
    """The paper table of one dataset: seeds and how many converged, cost, metrics (mean ± std
    over n seeds, the headline one with its interval), gain with its interval and mark."""
    g = report.groups
    latency = bool(g["latency_ms"].notna().any())
    columns = ["method", "student", "teacher", "n", "conv.", "params (M)", "GFLOPs"]
    columns += ["latency (ms)"] * latency
    columns += [f"{metric_label(m)} (%)" for m in report.metrics]
    columns += [f"Δ {metric_label(report.metric)}"]
    rows = []
    for _, row in g.iterrows():
        method = "vanilla (teacher)" if row["role"] == "teacher" else row["method"]
        cells = [
            with_variant(method, row["variant"]),
            row["student"],
            row["teacher"] or "—",
            str(row["n"]),
            converged(row["converged"], row["n"]),
            f"{row['params_m']:.2f}",
            f"{row['gflops']:.3f}",
        ]
        cells += [number(row["latency_ms"])] * latency
        cells += [metric_cell(row, m, m == report.metric) for m in report.metrics]
        cells += [signed(row["delta"]) + stars(row["p_value"]) + interval(row["delta_ci95"])]
        rows.append(cells)
    first_metric = len(columns) - len(report.metrics) - 1
    bold = best_cells(rows, g["role"] != "teacher", range(first_metric, len(columns)))
    caption = (
        f"{report.name}: test split at the best validation epoch; mean ± std over n seeds (%); "
        f"{CI_NOTE}. conv.: converged runs of n (a run converged when "
        f"{convergence_rule(report.within)}); {NOT_CONVERGED}: not all. "
        f"Params and GFLOPs (per image) of the deployed student; {FLOPS_NOTE}. "
        f"Δ: gain over the vanilla student in points; * p < 0.05, ** p < 0.01, {TEST_NOTE}. "
        "Bold: best student per column."
    )
    return Table(columns, rows, "lll" + "r" * (len(columns) - 3), caption, bold)


def convergence_rule(within: float) -> str:
    return (
        f"its validation selection metric (train.select) moved less than {within:g} points "
        "over the last quarter of its epochs, at least the last 2"
    )


def converged(count: int, n: int) -> str:
    return f"{count}/{n}" + (f" {NOT_CONVERGED}" if count < n else "")


def metric_cell(row: pd.Series, metric: str, headline: bool) -> str:
    text = mean_std(row[metric], row[f"{metric}_std"])
    return text + interval(row[f"{metric}_ci95"]) if headline else text


def interval(half_width: float) -> str:
    return "" if math.isnan(half_width) else f" [±{half_width:.2f}]"


def table_csv(report: DatasetReport) -> pd.DataFrame:
    """The table's numbers at full precision (metrics and Δ in %), one row per group."""
    g = report.groups
    columns = [*GROUP, "role", "n", "converged", "seeds", "params_m", "gflops", "latency_ms"]
    columns += [c for m in report.metrics for c in (m, f"{m}_std", f"{m}_ci95")]
    columns += ["delta", "delta_ci95", "p_value", "test", "pairs", "pairs_std"]
    out = g[[*columns, "pareto_gflops", "pareto_params"]]
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


def best_cells(rows: list[list[str]], eligible: Iterable[bool], columns: Iterable[int]) -> set:
    """(row, column) of the largest displayed value per column among ``eligible`` rows."""
    eligible = list(eligible)
    bold = set()
    for j in columns:
        values = {i: leading_number(rows[i][j]) for i in range(len(rows)) if eligible[i]}
        values = {i: v for i, v in values.items() if not math.isnan(v)}
        if values:
            top = max(values.values())
            bold |= {(i, j) for i, v in values.items() if v == top}
    return bold


def leading_number(text: str) -> float:
    found = re.match(r"[+-]?\d+(\.\d+)?", text)
    return float(found.group()) if found else math.nan


def to_markdown(table: Table) -> str:
    """A GitHub pipe table (bold as ``**x**``), the caption as a paragraph below it."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    rule = ["---:" if a == "r" else ":---" for a in table.align]
    body = [
        line([markdown_cell(table, i, j) for j in range(len(table.columns))])
        for i in range(len(table.rows))
    ]
    text = "\n".join([line([markdown_text(c) for c in table.columns]), line(rule), *body])
    return text + (f"\n\n{table.caption}" if table.caption else "")


def markdown_cell(table: Table, i: int, j: int) -> str:
    text = markdown_text(table.rows[i][j])
    return f"**{text}**" if (i, j) in table.bold and text else text


def markdown_text(text: str) -> str:
    """Escaped for a pipe table: ``|`` and ``*`` (significance marks) are literal."""
    return text.replace("|", r"\|").replace("*", r"\*")


def to_latex(table: Table, label: str = "") -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""

    def line(cells: list[str]) -> str:
        return " & ".join(cells) + r" \\"

    body = [
        line([latex_cell(table, i, j) for j in range(len(table.columns))])
        for i in range(len(table.rows))
    ]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{latex_text(table.caption)}}}" if table.caption else "",
        rf"\label{{{label}}}" if label else "",
        rf"\begin{{tabular}}{{{table.align}}}",
        r"\toprule",
        line([latex_text(c) for c in table.columns]),
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(x for x in lines if x) + "\n"


def latex_cell(table: Table, i: int, j: int) -> str:
    """One cell: escaped, symbols as math, a trailing significance mark as a superscript."""
    text = table.rows[i][j]
    found = SIGNIFICANCE.match(text)
    if found:
        cell = f"{found['number']}$^{{{found['stars']}}}${latex_text(found['rest'])}"
    else:
        cell = latex_text(text)
    cell = re.sub(r"^-(?=\d)", "$-$", cell)  # a minus sign, not a hyphen
    return rf"\textbf{{{cell}}}" if (i, j) in table.bold and text else cell


def latex_text(text: str) -> str:
    escaped = "".join(LATEX_SPECIALS.get(ch, ch) for ch in text)
    return "".join(LATEX_SYMBOLS.get(ch, ch) for ch in escaped)


def readme(summary: Report, sources: Sequence[str], sections: list[str]) -> str:
    where = f" from {', '.join(f'`{s}`' for s in sources)}" if sources else ""
    extra = f"; {summary.duplicates} duplicate run ids counted once" if summary.duplicates else ""
    head = (
        f"# {TITLE}\n\n{summary.runs} runs{where}: {summary.finished} finished, "
        f"{summary.failed} failed{extra}. Written by `kdbench report`; every number is in "
        "`runs.csv` and `tables/*.csv`, every figure in `plots/` (PNG and SVG).\n"
    )
    return "\n".join([head, *sections])


def dataset_section(report: DatasetReport, table: Table, plots: dict[str, Path]) -> str:
    metric = metric_label(report.metric)
    titles = {
        "vs-gflops": f"{metric} vs GFLOPs",
        "vs-params": f"{metric} vs parameters",
        "bars": f"{metric} per method",
        "curves": f"validation {metric} per epoch",
        "curves-frequency": "validation AUC on the frequency fakes per epoch",
    }
    images = "\n".join(
        f"[![{titles[kind]}](plots/{path.name})](plots/{path.with_suffix('.svg').name})"
        for kind, path in plots.items()
    )
    files = " · ".join(
        f"[{fmt}](tables/{report.slug}.{ext})"
        for fmt, ext in (("CSV", "csv"), ("LaTeX", "tex"), ("Markdown", "md"))
    )
    notes = f"{convergence_note(report)}\n\n{power_note(report.power, metric)}"
    pairs = pairs_section(report.pairs, metric, f"tables/{report.slug}-pairs.csv")
    return (
        f"## {report.name}\n\n{to_markdown(table)}\n\nTable: {files}\n\n{notes}\n\n"
        f"{pairs}{images}\n"
    )


def pairs_section(pairs, metric: str, csv: str) -> str:
    """Every pair of student groups: Δ (row − column), paired p, σ_d and what it can detect."""
    if pairs.empty or not (pairs["pairs"] >= 2).any():
        return ""
    lines = [
        f"**Pairs** ({metric}, points; [CSV]({csv})): Δ is the first method's mean per-seed "
        "difference from the second over the seeds they share; p the paired t-test; "
        "detectable the difference that test finds with power "
        f"{POWER:g} at α = {ALPHA:g}, given the spread σ_d of that pair's differences.",
        "",
        "| method | vs | Δ | p | σ_d | detectable |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in pairs.itertuples():
        lines.append(
            f"| {row.a} | {row.b} | {signed(row.delta)} | {number(row.p_value, 3)}"
            f"{stars(row.p_value)} | {number(row.sigma_d)} | {number(row.detectable, 1)} |"
        )
    return "\n".join(lines) + "\n\n"


def convergence_note(report: DatasetReport) -> str:
    """Which groups have runs that did not converge (or that all did), and the rule."""
    g = report.groups
    late = g[g["converged"] < g["n"]]
    rule = f"A run converged when {convergence_rule(report.within)}."
    if late.empty:
        return f"**Convergence**: all {g['n'].sum()} runs converged. {rule}"
    listed = ", ".join(
        f"{label} ({c}/{n} converged)"
        for label, c, n in zip(late["label"], late["converged"], late["n"], strict=True)
    )
    count = int((late["n"] - late["converged"]).sum())
    return (
        f"**Convergence {NOT_CONVERGED}**: {count} of {g['n'].sum()} runs did not converge: "
        f"{listed}. {rule}"
    )


def power_note(power: Power, metric: str) -> str:
    """The minimum detectable difference with the seeds there are, and the seeds needed."""
    test = f"a two-sided paired t-test at α = {ALPHA:g} with power {POWER:g}"
    if not power.source:
        return f"**Power** ({metric}): not measured; no student group has 2 seeds."
    if power.source == "paired":
        spread = (
            f"σ_d = {power.sigma_d:.2f} points, the pooled std of the per-seed differences "
            f"of {power.pooled} group(s) from their vanilla student"
        )
    else:
        spread = (
            f"σ_d = √2 × {power.spread:.2f} = {power.sigma_d:.2f} points (no seeds pair up: "
            f"√2 × the pooled std within {power.pooled} student group(s))"
        )
    needed = f"{power.needed}" if power.needed else f"more than {MOST_SEEDS}"
    return (
        f"**Power** ({metric}): {spread}. With n = {power.n} seeds (the fewest of them), "
        f"{test} detects a difference of {number(power.detectable)} points; "
        f"{TARGET_DIFFERENCE:g} points need {needed} seeds."
    )


def reference_section(table: Table) -> str:
    return f"## Published references\n\n{to_markdown(table)}\n"


def skipped_section(skipped: list[str]) -> str:
    lines = "\n".join(f"- `{line}`" for line in skipped)
    return f"## Files left out ({len(skipped)})\n\nNot usable run results:\n\n{lines}\n"


def failed_section(failed: pd.DataFrame) -> str:
    return (
        f"## Failed runs ({len(failed)})\n\nNot in any table or plot above; "
        f"their JSONs hold the full traceback.\n\n{to_markdown(failed_table(failed))}\n"
    )


def html_page(markdown: str, title: str) -> str:
    """A standalone HTML page of ``markdown`` (tables included): opens from disk, no server."""
    from markdown_it import MarkdownIt  # a dependency of rich

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; }
thead th { border-bottom: 2px solid #444; }
img { max-width: 100%; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""
