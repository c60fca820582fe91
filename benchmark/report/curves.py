"""The learning-curve figure: a validation metric per epoch, mean ± std over seeds."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kdbench.report.analysis import DatasetReport
from kdbench.report.figstyle import legend
from kdbench.report.labels import metric_label


def curve_figure(
    report: DatasetReport, styles: dict[str, dict], metric: str | None = None
) -> Figure:
    """Validation ``metric`` (the report's by default) per epoch, mean ± std band over seeds:
    one panel per student with its teachers' curves dashed."""
    groups, metric = report.groups, metric or report.metric
    students = list(dict.fromkeys(groups.loc[groups["role"] != "teacher", "student"]))
    panels = students or list(groups["student"])
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(3.6 * cols + 1.8, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    curves = epoch_stats(report.history, metric)
    for ax, student in zip(axes, panels, strict=False):
        teachers = set(groups.loc[groups["student"] == student, "teacher"]) - {""}
        shown = groups[
            ((groups["student"] == student) & (groups["role"] != "teacher"))
            | ((groups["role"] == "teacher") & groups["student"].isin(teachers | {student}))
        ]
        for label in shown["label"]:
            if label in curves:
                draw_curve(ax, curves[label], styles[label])
        ax.set_title(f"{report.name}: {student}" if len(panels) == 1 else student)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.set_ylabel(f"validation {metric_label(metric)} (%)")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if len(panels) > 1:
        fig.suptitle(report.name, fontweight="bold")
    legend(fig, axes[: len(panels)])
    return fig


def epoch_stats(history: pd.DataFrame, metric: str) -> dict[str, pd.DataFrame]:
    """Per group label: mean and std of ``metric`` over seeds, indexed by epoch."""
    if metric not in history:
        return {}
    stats = history.groupby(["label", "epoch"])[metric].agg(["mean", "std"]).reset_index()
    return {label: part.set_index("epoch") for label, part in stats.groupby("label")}


def draw_curve(ax: Axes, curve: pd.DataFrame, style: dict) -> None:
    epochs, mean, std = curve.index, curve["mean"], curve["std"].fillna(0)
    ax.fill_between(epochs, mean - std, mean + std, color=style["color"], alpha=0.15, lw=0)
    ax.plot(
        epochs,
        mean,
        color=style["color"],
        linestyle="--" if style["teacher"] else "-",
        linewidth=1.2,
        marker=style["marker"],
        markersize=5 if style["teacher"] else 3.5,
        markevery=max(1, len(epochs) // 8),
        label=style["legend"],
    )
