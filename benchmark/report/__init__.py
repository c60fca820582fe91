"""The report: run JSONs → per-dataset tables, plots and reference deltas in one browsable folder.

Every finished run is one row of a DataFrame; runs are grouped by dataset × teacher × student ×
method (seeds are the replicates). Failed runs are listed with their reason, never dropped.
Metrics are percentages; costs are those of the deployed student (``cost.student`` of a run:
``params``, ``flops`` and, where recorded, ``latency_ms``).

One module per step, each importing only those before it:

- ``labels``: what the tables call a run's data, model, method and metrics;
- ``stats``: pure statistics in points (convergence, t-intervals, power of a paired test);
- ``columns``: the column list every table is made from (a new column is one entry there);
- ``frames``: run JSONs → DataFrames (one row per run; failed runs; histories; recipes);
- ``compare``: gains over the vanilla student, pairs of groups, the power of the seeds;
- ``analysis``: one dataset's groups, their comparisons, Pareto front, table order;
- ``references``: published numbers and the difference to ours;
- ``tables``: the tables as one model (cells as text); ``render``: a table as Markdown,
  LaTeX or a terminal table;
- ``plots``: the figures; ``pages``: the Markdown/HTML pages;
- ``write``: the folder (README.md, index.html, runs.csv, tables/, plots/).

The names below are imported from their module on first use, so that importing one light
module (``kdbench.report.stats``, ``labels`` or ``columns``, read by the command line and the
sweep) does not load pandas and matplotlib.
"""

from kdbench.lazy import lazy_exports

EXPORTS = {
    "DatasetReport": "analysis",
    "Power": "compare",
    "analyse": "analysis",
    "metric_label": "labels",
    "pareto_mask": "analysis",
    "METRIC_LABELS": "labels",
    "ReportInputError": "frames",
    "history_frame": "frames",
    "load_runs": "frames",
    "runs_frame": "frames",
    "unique_runs": "frames",
    "REFERENCES": "references",
    "load_references": "references",
    "reference_deltas": "references",
    "Report": "write",
    "write_report": "write",
}
__all__ = sorted(EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
