"""The report's figures (seaborn styling on matplotlib ``Figure`` objects, no pyplot state).

Per dataset: the headline metric vs GFLOPs and vs parameters (log x, error bars over seeds,
teachers in black, the Pareto front), a per-group bar chart and per-epoch validation curves.
Every group keeps one colour and marker across the four figures.
"""

from __future__ import annotations

import math

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from kdbench.report.analysis import DatasetReport, pareto_mask
from kdbench.report.curves import curve_figure
from kdbench.report.figstyle import STYLE, group_styles, legend
from kdbench.report.labels import metric_label

COST_AXES = {"gflops": "GFLOPs per image (log scale)", "params_m": "parameters (M, log scale)"}


def dataset_figures(report: DatasetReport) -> dict[str, Figure]:
    """The four figures of one dataset, keyed by the file-name suffix they are saved under."""
    styles = group_styles(report.groups)
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), mpl.rc_context(STYLE):
        figures = {
            "vs-gflops": cost_figure(report, "gflops", styles),
            "vs-params": cost_figure(report, "params_m", styles),
            "bars": bar_figure(report, styles),
            "curves": curve_figure(report, styles),
        }
        if report.metric == "auc" and KIND_CURVE in report.history:
            figures["curves-frequency"] = curve_figure(report, styles, KIND_CURVE)
        return figures


KIND_CURVE = "auc_frequency"  # a dataset with kinds of fake also gets this metric's curves


def cost_figure(report: DatasetReport, cost: str, styles: dict[str, dict]) -> Figure:
    """The headline metric vs ``cost`` (log x): a marker per group with ±1 std over seeds,
    teachers in black, the Pareto front (nothing both cheaper and better) as a staircase."""
    groups, metric = report.groups, report.metric
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    legends = groups["label"].map(lambda label: styles[label]["legend"])
    for entry, part in groups.groupby(legends, sort=False):  # one artist per legend entry
        style = styles[part["label"].iloc[0]]
        ax.errorbar(
            part[cost],
            part[metric],
            yerr=clipped_spread(part[metric], part[f"{metric}_std"]),
            fmt=style["marker"],
            color=style["color"],
            markersize=marker_size(style),
            markeredgecolor="white",
            markeredgewidth=0.6,
            capsize=3,
            elinewidth=1,
            label=entry,
            zorder=3,
        )
    draw_front(ax, groups, cost, metric)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(minor_tick))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.margins(x=0.2, y=0.1)
    ax.set_xlabel(COST_AXES[cost])
    ax.set_ylabel(f"test {metric_label(metric)} (%)")
    ax.set_title(report.name)
    students = groups[groups["role"] == "baseline"]
    if students["student"].nunique() > 1:  # name each student once, at its vanilla point
        label_points(ax, zip(students[cost], students[metric], students["student"], strict=True))
    legend(fig, [ax])
    return fig


def marker_size(style: dict) -> float:
    """Teachers larger than students; a star looks smaller than a solid shape of its size."""
    if not style["teacher"]:
        return 7
    return 14 if style["marker"] == "*" else 10


def minor_tick(value: float, _pos) -> str:
    """Label the 2× and 5× ticks of each decade (the rest crowd a short log axis)."""
    mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:g}" if mantissa in (2, 5) else ""


def draw_front(ax: Axes, groups: pd.DataFrame, cost: str, metric: str) -> None:
    """One dashed front per ``setting`` (groups trained the same way), labelled once."""
    label = "Pareto front"
    for _, part in groups.groupby("setting", sort=False):
        front = part[pareto_mask(part[cost], part[metric])].sort_values(cost)
        if len(front) > 1:
            ax.step(
                front[cost],
                front[metric],
                where="post",
                linestyle="--",
                linewidth=1,
                color="0.55",
                zorder=1,
                label=label,
            )
            label = "_nolegend_"


def label_points(ax: Axes, points) -> None:
    """Name points just right of them; a name that would overlap an earlier one moves down
    (text boxes estimated in axes fractions: 7 pt text on a ~4 in axes)."""
    ax.autoscale_view()
    to_axes = ax.transData + ax.transAxes.inverted()
    placed: list[tuple[float, float, float]] = []
    for x, y, text in sorted(points, key=lambda p: -p[1]):
        fx, fy = to_axes.transform((x, y))
        width, height = 0.0125 * len(text), 0.04
        tx, ty = fx + 0.02, fy - 0.015
        while any(
            tx < px + pw and px < tx + width and abs(ty - py) < height for px, py, pw in placed
        ):
            ty -= height
        placed.append((tx, ty, width))
        moved = ty < fy - 0.02
        ax.annotate(
            text,
            (x, y),
            xytext=(tx, ty),
            textcoords="axes fraction",
            fontsize=7,
            color="0.3",
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "alpha": 0.7, "lw": 0},
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if moved else None,
            zorder=4,
        )


def bar_figure(report: DatasetReport, styles: dict[str, dict]) -> Figure:
    """The headline metric per group: mean bar, ±1 std error bar, one dot per seed. The axis
    starts a little below the lowest mean (a multiple of 5), as its ticks show."""
    metric = report.metric
    groups = report.groups.dropna(subset=[metric])
    width = max(6.4, 3.0 + 0.075 * groups["label"].str.len().max())  # room for long labels
    fig = Figure(figsize=(width, 0.9 + 0.3 * len(groups)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(groups))
    colours = [styles[label]["color"] for label in groups["label"]]
    ax.barh(
        y,
        groups[metric],
        xerr=clipped_spread(groups[metric], groups[f"{metric}_std"]),
        color=colours,
        height=0.75,
        capsize=3,
        error_kw={"elinewidth": 1, "ecolor": "0.2"},
    )
    position = dict(zip(groups["label"], y, strict=True))
    seeds = report.runs[report.runs["label"].isin(position)]
    ax.scatter(seeds[metric], seeds["label"].map(position), s=6, color="0.1", zorder=3, lw=0)
    lowest = min(seeds[metric].min(), (groups[metric] - groups[f"{metric}_std"].fillna(0)).min())
    left = max(0.0, 5 * math.floor((lowest - 3) / 5))  # every seed's dot and error bar shows
    right = min(
        100.0, max(seeds[metric].max(), (groups[metric] + groups[f"{metric}_std"].fillna(0)).max())
    )
    ax.set_xlim(left, right + 0.04 * (right - left))
    for i, (value, colour) in enumerate(zip(groups[metric], colours, strict=True)):
        ink = "0.1" if luminance(colour) > 0.55 else "white"
        ax.text(
            (left + value) / 2, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color=ink
        )
    ax.set_yticks(y, groups["label"])
    ax.invert_yaxis()  # table order, top to bottom
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(f"test {metric_label(metric)} (%)")
    ax.set_title(report.name)
    return fig


def clipped_spread(mean: pd.Series, std: pd.Series) -> np.ndarray:
    """±1 std as matplotlib's ``[below, above]``, the upper arm cut at 100 % (a percentage)."""
    std = std.fillna(0).to_numpy()
    return np.vstack([std, np.minimum(std, np.maximum(0.0, 100.0 - mean.to_numpy()))])


def luminance(colour) -> float:
    red, green, blue = mpl.colors.to_rgb(colour)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue
