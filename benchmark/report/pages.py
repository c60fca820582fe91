"""The report's pages: README.md (per dataset its table, notes on convergence, power and pairs,
its figures; published references; failed runs) and index.html from the same Markdown."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from kdbench.report.analysis import DatasetReport
from kdbench.report.columns import NOT_CONVERGED, number, signed, stars
from kdbench.report.compare import Power
from kdbench.report.frames import TITLE
from kdbench.report.labels import metric_label
from kdbench.report.render import to_markdown
from kdbench.report.stats import ALPHA, MOST_SEEDS, POWER, TARGET_DIFFERENCE
from kdbench.report.tables import Table, convergence_rule, failed_table

if TYPE_CHECKING:  # the report folder's summary; write imports this module
    from kdbench.report.write import Report


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
