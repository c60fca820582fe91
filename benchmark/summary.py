"""The end-of-run table: runs grouped by data × model × method, metrics as mean ± std over seeds."""

from __future__ import annotations

import math
import statistics
from itertools import groupby

from rich.markup import escape
from rich.table import Table

METRICS = ("acc", "auc", "video_auc")


def run_row(record: dict) -> dict:
    """One finished run as a flat row (test metrics at the best validation epoch)."""
    cfg, cost, test = record["config"], record["cost"]["student"], record["best"]["test"]
    return {
        "data": data_label(cfg["data"]),
        "model": model_label(cfg["student"]),
        "method": method_label(cfg["method"]),
        "seed": cfg["seed"],
        "params_m": cost["params"] / 1e6,
        "gflops": cost["flops"] / 1e9,
    } | {m: test.get(m, math.nan) for m in METRICS}


def summary_rows(records: list[dict]) -> list[dict]:
    """Rows grouped over seeds: ``n``, and ``<metric>`` / ``<metric>_std`` per metric."""
    rows = [run_row(r) for r in records if r.get("status") == "done"]
    key = lambda row: (row["data"], -row["params_m"], row["model"], row["method"])  # noqa: E731
    grouped = []
    for _, members in groupby(sorted(rows, key=key), key=key):
        members = list(members)
        out = {k: members[0][k] for k in ("data", "model", "method", "params_m", "gflops")}
        out["n"] = len(members)
        for m in METRICS:
            values = [row[m] for row in members]
            out[m] = statistics.fmean(values)
            out[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        grouped.append(out)
    return grouped


def data_label(data: dict) -> str:
    """``synthff lq``, ``synthff lq 25% train`` (``train_fraction``), ``ff++ -> celebdf``."""
    quality = data["params"].get("quality")
    test = f" -> {data['test']['name']}" if data.get("test") else ""
    fraction = data.get("train_fraction", 1.0)
    part = f" {100 * fraction:g}% train" if fraction != 1.0 else ""
    return data["name"] + (f" {quality}" if quality else "") + part + test


def model_label(model: dict) -> str:
    """The model's name plus its switched-on flags (``dual-branch+aux_heads+lfs``) and, for a
    single-branch dual-branch model, the branch."""
    kwargs = model.get("kwargs") or {}
    name = "+".join([model["name"], *sorted(k for k, v in kwargs.items() if v is True)])
    if kwargs.get("branch", "both") != "both":
        return f"{name} ({kwargs['branch']} only)"
    return name


def method_label(method: dict) -> str:
    """The method's name, ``+KD`` when it has a logit-KD term (``kd_weight`` > 0, as
    RepDistiller's "CRD+KD"), and the parameters it was given other than its defaults
    (``two-in-one+KD [homogenize=pcgrad]``)."""
    given = method.get("params") or {}
    params = not_defaults(method["name"], given)
    if params.get("kd_weight") == 1.0:  # what "+KD" says
        del params["kd_weight"]
    shown = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    kd = "+KD" if (given.get("kd_weight") or 0) > 0 else ""
    return method["name"] + kd + (f" [{shown}]" if shown else "")


def not_defaults(name: str, params: dict) -> dict:
    """``params`` less those equal to method ``name``'s defaults (all of them for a method
    that is not registered here, e.g. from a plugin not loaded)."""
    from kdbench.identity import defaults
    from kdbench.registry import METHODS, UnknownNameError

    try:
        known = defaults(METHODS.get(name))
    except UnknownNameError:
        return params
    return {k: v for k, v in params.items() if k not in known or known[k] != v}


def mean_std(mean: float, std: float) -> str:
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def summary_table(records: list[dict], title: str = "kdbench results") -> Table:
    table = Table(
        title=title,
        caption="test split, best validation epoch; mean ± std over n seeds; "
        "GFLOPs per image, fvcore (one multiply-add = one flop)",
    )
    for name in ("data", "model", "method", "n", "params (M)", "GFLOPs", "ACC", "AUC", "video AUC"):
        table.add_column(name, justify="left" if name in ("data", "model", "method") else "right")
    for row in summary_rows(records):
        table.add_row(
            row["data"],
            row["model"],
            escape(row["method"]),
            str(row["n"]),
            f"{row['params_m']:.2f}",
            f"{row['gflops']:.3f}",
            *(mean_std(row[m], row[f"{m}_std"]) for m in METRICS),
        )
    return table
