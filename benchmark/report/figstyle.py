"""The look shared by every report figure: colours and markers per group, one legend per
figure, and saving as PNG plus SVG."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "p", "h")
TEACHER_MARKERS = ("*", "X", "P", "D", "^", "v", "s")
TEACHER_COLOUR = "0.1"
STYLE = {"axes.titleweight": "bold", "legend.frameon": False}
SAVE = {"svg.fonttype": "none", "svg.hashsalt": "kdbench"}  # text stays text; stable ids


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


def save_figure(fig: Figure, stem: Path) -> Path:
    """``stem``.png (150 dpi) and ``stem``.svg (text kept as text); returns the PNG's path."""
    png = stem.with_suffix(".png")
    with mpl.rc_context(SAVE):
        fig.savefig(png, dpi=150, metadata={"Software": None})
        fig.set_layout_engine("none")  # keep the layout just computed: the SVG needs no second
        fig.savefig(stem.with_suffix(".svg"), metadata={"Date": None})
    return png
