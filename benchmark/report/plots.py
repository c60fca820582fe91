"""The report's figures (seaborn styling on matplotlib ``Figure`` objects, no pyplot state).

Per dataset: the headline metric vs GFLOPs and vs parameters (log x, error bars over seeds,
teachers in black, the Pareto front), a per-group bar chart and per-epoch validation curves.
Every group keeps one colour and marker across the four figures.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from kdbench.report.analysis import DatasetReport, pareto_mask
from kdbench.report.labels import metric_label

MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "p", "h")
TEACHER_MARKERS = ("*", "X", "P", "D", "^", "v", "s")
TEACHER_COLOUR = "0.1"
STYLE = {"axes.titleweight": "bold", "legend.frameon": False}
SAVE = {"svg.fonttype": "none", "svg.hashsalt": "kdbench"}  # text stays text; stable ids
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


def group_styles(groups: pd.DataFrame) -> dict[str, dict]:
    """Per group label: colour, marker and legend entry. A method looks the same for every
    student (colours cycle with period 20, markers with 11: pairs are unique up to 220
    methods); teachers are black, one marker each."""
    methods = list(dict.fromkeys(groups.loc[groups["role"] != "teacher", "method_key"]))
    colours = itertools.cycle(sns.color_palette("colorblind") + sns.color_palette("dark"))
    markers = itertools.cycle(MARKERS)
    by_method = {m: {"color": next(colours), "marker": next(markers)} for m in methods}
    teachers = itertools.cycle(TEACHER_MARKERS)
    styles = {}
    for _, row in groups.iterrows():
        if row["role"] == "teacher":
            style = {"color": TEACHER_COLOUR, "marker": next(teachers)}
            styles[row["label"]] = style | {"legend": row["label"], "teacher": True}
        else:
            style = by_method[row["method_key"]]
            styles[row["label"]] = style | {"legend": row["method_key"], "teacher": False}
    return styles


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


LEGEND_BESIDE = 8  # entries; more go below the axes, in two columns, the figure made taller
LABEL_BESIDE = 40  # characters: a longer label also sends the legend below the axes
ONE_COLUMN = 60  # characters: a longer label gets the legend's whole width below the axes


def legend(fig: Figure, axes) -> None:
    """One legend for the figure, each entry once: right of the axes, or below them when it
    has many entries (long labels beside the axes would squeeze them to nothing)."""
    shown = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        shown |= dict(zip(labels, handles, strict=True))
    longest = max(map(len, shown), default=0)
    if len(shown) <= LEGEND_BESIDE and longest <= LABEL_BESIDE:
        fig.legend(shown.values(), shown.keys(), loc="outside right upper", fontsize=7)
        return
    columns = 1 if longest > ONE_COLUMN else 2
    width, height = fig.get_size_inches()
    rows = math.ceil(len(shown) / columns)
    fig.set_size_inches(max(width, 9.0), height + 0.17 * rows + 0.3)
    fig.legend(shown.values(), shown.keys(), loc="outside lower center", ncols=columns, fontsize=7)


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


def save_figure(fig: Figure, stem: Path) -> Path:
    """``stem``.png (150 dpi) and ``stem``.svg (text kept as text); returns the PNG's path."""
    png = stem.with_suffix(".png")
    with mpl.rc_context(SAVE):
        fig.savefig(png, dpi=150, metadata={"Software": None})
        fig.set_layout_engine("none")  # keep the layout just computed: the SVG needs no second
        fig.savefig(stem.with_suffix(".svg"), metadata={"Date": None})
    return png
