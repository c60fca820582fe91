"""The report folder: README.md, index.html, runs.csv, tables/ and plots/ for a set of runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from kdbench.report.analysis import DatasetReport, analyse
from kdbench.report.figstyle import save_figure
from kdbench.report.frames import (
    TITLE,
    ReportInputError,
    failed_frame,
    history_frame,
    runs_frame,
    unique_runs,
)
from kdbench.report.pages import (
    dataset_section,
    failed_section,
    html_page,
    readme,
    reference_section,
    skipped_section,
)
from kdbench.report.plots import dataset_figures
from kdbench.report.references import REFERENCES, load_references, reference_deltas
from kdbench.report.render import to_latex, to_markdown
from kdbench.report.stats import CONVERGED_WITHIN
from kdbench.report.tables import Table, dataset_table, reference_table, table_csv


@dataclass
class Report:
    """What was written where, and each dataset's table, for the command line to print."""

    out: Path
    runs: int
    finished: int
    failed: int
    duplicates: int
    datasets: list[str] = field(default_factory=list)
    references: int = 0
    skipped: list[str] = field(default_factory=list)  # files that are not usable run results
    tables: dict[str, Table] = field(default_factory=dict)  # by dataset, for the terminal

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
    sections, tables = [], {}
    for report in reports:
        table = dataset_table(report)
        tables[report.name] = dataset_table(report, terminal=True)
        write_tables(out / "tables", report.slug, table, table_csv(report))
        report.pairs.to_csv(out / "tables" / f"{report.slug}-pairs.csv", index=False)
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
    summary = Report(out, *counts, names, len(deltas), list(skipped), tables)
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
    numbers.to_csv(folder / f"{stem}.csv", index=False)
    (folder / f"{stem}.md").write_text(to_markdown(table) + "\n")
    (folder / f"{stem}.tex").write_text(to_latex(table, label=f"tab:{stem}"))
