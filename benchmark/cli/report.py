"""``kdbench report``: run results → tables, plots and reference deltas in one folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdbench.console import console
from kdbench.report.stats import CONVERGED_WITHIN


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report", help="tables, plots and reference deltas of run results (README.md, index.html)"
    )
    report.add_argument(
        "results", nargs="+", type=Path, metavar="RESULTS_DIR", help="folders holding runs/*.json"
    )
    report.add_argument(
        "--out", type=Path, help="where to write the report (default: RESULTS_DIR/report)"
    )
    report.add_argument(
        "--references",
        type=Path,
        help="folder of published-number CSVs (default: those kdbench ships, benchmark/references)",
    )
    report.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="flag a published number further than this many points from ours (default 1.0)",
    )
    report.add_argument(
        "--metric",
        help="headline metric where recorded (default: the one runs picked their best epoch by)",
    )
    report.add_argument(
        "--converged-within",
        type=float,
        default=CONVERGED_WITHIN,
        metavar="POINTS",
        help="a run converged when its validation selection metric moved less than this over "
        f"the last quarter of its epochs (default {CONVERGED_WITHIN:g})",
    )
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from kdbench.report import REFERENCES, load_runs, write_report

    out = args.out or args.results[0] / "report"
    records, skipped = load_runs(args.results)
    for line in skipped:
        console.print(f"warning: {line}; left out", highlight=False, markup=False, soft_wrap=True)
    summary = write_report(
        records,
        out,
        references=args.references or REFERENCES,
        tolerance=args.tolerance,
        metric=args.metric,
        sources=[str(p) for p in args.results],
        skipped=skipped,
        within=args.converged_within,
    )
    show(summary)
    return 0


def report_demo(results: Path, run_ids: list[str]):
    """Write the report of the demo's runs (read back from ``results``) to ``results/demo``;
    its ``Report``."""
    from kdbench.report import write_report
    from kdbench.results import read_result

    records = [r for r in (read_result(results, run_id) for run_id in run_ids) if r]
    return write_report(records, results / "demo", sources=[str(results / "runs")])


def show(summary) -> None:
    failed = f", {summary.failed} failed" if summary.failed else ""
    console.print(
        f"report: {summary.finished} finished runs{failed}, "
        f"{len(summary.datasets)} dataset(s) → {summary.index}",
        highlight=False,
        soft_wrap=True,
    )
