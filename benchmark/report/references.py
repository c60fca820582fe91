"""Published numbers (``kdbench/references/*.csv``, package data) next to ours: each row's
recipe, and the difference where a group matches it."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from kdbench.paths import package_folder
from kdbench.report.frames import ReportInputError

REFERENCES = package_folder("references")


def load_references(folder: Path | None) -> pd.DataFrame:
    """Published numbers (``*.csv`` in ``folder``; schema in benchmark/references/README.md) in
    long form: dataset, metric, teacher, student, method, published, source."""
    columns = ["dataset", "metric", "teacher", "student", "method", "published", "source"]
    if folder is None or not Path(folder).is_dir():
        return pd.DataFrame(columns=columns)
    parts = [reference_rows(path) for path in sorted(Path(folder).glob("*.csv"))]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def reference_rows(path: Path) -> pd.DataFrame:
    keys = ["dataset", "metric", "teacher", "student"]
    wide = pd.read_csv(path, comment="#", dtype={k: str for k in keys}, skipinitialspace=True)
    missing = [k for k in keys if k not in wide.columns]
    if missing:
        raise ReportInputError(f"{path}: missing columns {', '.join(missing)} (see README.md)")
    long = wide.melt(id_vars=keys, var_name="method", value_name="published")
    long = long.dropna(subset=["published"])
    alone = long["method"].isin(["T", "S"])
    long.loc[long["method"] == "T", "student"] = long["teacher"]
    long.loc[alone, "teacher"] = ""
    long.loc[alone, "method"] = "vanilla"
    long = long.assign(
        published=pd.to_numeric(long["published"], errors="coerce"), source=path.name
    )
    key = [*keys, "method"]
    conflicts = long.groupby(key)["published"].nunique()
    if (conflicts > 1).any():
        where = " / ".join(conflicts[conflicts > 1].index[0])
        raise ReportInputError(f"{path}: two different published values for {where}")
    return long.drop_duplicates(subset=key)


def reference_deltas(
    groups: pd.DataFrame, references: pd.DataFrame, tolerance: float
) -> pd.DataFrame:
    """Our groups next to matching published values: ours, published, delta, within tolerance.

    A reference row matches on dataset (``data.name`` or the report's dataset label), teacher,
    student and method names.
    """
    if groups.empty or references.empty:
        return pd.DataFrame()
    rows = []
    for _, ref in references.iterrows():
        same = groups[
            ((groups["data_name"] == ref["dataset"]) | (groups["dataset"] == ref["dataset"]))
            & (groups["teacher_name"] == ref["teacher"])
            & (groups["student_name"] == ref["student"])
            & (groups["method_name"] == ref["method"])
        ]
        for _, ours in same.iterrows():
            mean = ours.get(ref["metric"], math.nan)
            rows.append(
                {
                    "dataset": ours["dataset"],
                    "teacher": ours["teacher"],
                    "student": ours["student"],
                    "method": ours["method"],
                    "variant": ours["variant"],
                    "metric": ref["metric"],
                    "n": ours["n"],
                    "ours": mean,
                    "ours_std": ours.get(f"{ref['metric']}_std", math.nan),
                    "published": ref["published"],
                    "delta": mean - ref["published"],
                    "within": bool(abs(mean - ref["published"]) <= tolerance),
                    "source": ref["source"],
                }
            )
    return pd.DataFrame(rows)
