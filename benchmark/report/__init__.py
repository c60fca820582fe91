"""The report: run JSONs → per-dataset tables, plots and reference deltas in one browsable folder.

Every finished run is one row of a DataFrame; runs are grouped by dataset × teacher × student ×
method (seeds are the replicates). Failed runs are listed with their reason, never dropped.
Metrics are percentages; costs are those of the deployed student (``cost.student`` of a run:
``params``, ``flops`` and, where recorded, ``latency_ms``).

One module per step, each importing only those before it:

- ``frames``: run JSONs → DataFrames (one row per run; failed runs; histories; recipes);
- ``stats``: pure statistics in points (convergence, t-intervals, power of a paired test);
- ``analysis``: one dataset's groups, gains over the vanilla student, Pareto front, power;
- ``references``: published numbers and the difference to ours;
- ``plots``: the figures; ``pages``: tables and the Markdown/HTML pages;
- ``write``: the folder (README.md, index.html, runs.csv, tables/, plots/).
"""

from kdbench.report.analysis import DatasetReport, Power, analyse, metric_label, pareto_mask
from kdbench.report.frames import (
    METRIC_LABELS,
    ReportInputError,
    history_frame,
    load_runs,
    runs_frame,
    unique_runs,
)
from kdbench.report.references import REFERENCES, load_references, reference_deltas
from kdbench.report.write import Report, write_report

__all__ = [
    "METRIC_LABELS",
    "REFERENCES",
    "DatasetReport",
    "Power",
    "Report",
    "ReportInputError",
    "analyse",
    "history_frame",
    "load_references",
    "load_runs",
    "metric_label",
    "pareto_mask",
    "reference_deltas",
    "runs_frame",
    "unique_runs",
    "write_report",
]
