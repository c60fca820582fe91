"""The end-of-run table: one row per run with model, method, cost and test metrics."""

from __future__ import annotations

import math

from rich.table import Table


def summary_rows(records: list[dict]) -> list[dict]:
    """Flatten finished run records into table rows (test metrics at the best validation epoch)."""
    rows = []
    for r in records:
        if r.get("status") != "done":
            continue
        cfg, cost, test = r["config"], r["cost"]["student"], r["best"]["test"]
        rows.append(
            {
                "data": data_label(cfg["data"]),
                "model": model_label(cfg["student"]),
                "method": method_label(cfg["method"]),
                "seed": cfg["seed"],
                "params_m": cost["params"] / 1e6,
                "gflops": cost["flops"] / 1e9,
                "acc": test["acc"],
                "auc": test.get("auc", math.nan),
                "video_auc": test.get("video_auc", math.nan),
            }
        )
    return sorted(rows, key=lambda row: (row["data"], -row["params_m"], row["method"], row["seed"]))


def data_label(data: dict) -> str:
    quality = data["params"].get("quality")
    return data["name"] + (f" {quality}" if quality else "")


def model_label(model: dict) -> str:
    kwargs = model.get("kwargs") or {}
    if "branch" in kwargs and kwargs["branch"] != "both":
        return f"{model['name']} ({kwargs['branch']} only)"
    return model["name"]


def method_label(method: dict) -> str:
    params = method.get("params") or {}
    shown = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return method["name"] + (f" [{shown}]" if shown else "")


def summary_table(records: list[dict], title: str = "kdbench results") -> Table:
    table = Table(title=title, caption="GFLOPs: fvcore, one multiply-add = one flop; test split")
    for name, justify in [
        ("data", "left"), ("model", "left"), ("method", "left"), ("seed", "right"),
        ("params (M)", "right"), ("GFLOPs", "right"), ("ACC", "right"), ("AUC", "right"),
        ("video AUC", "right"),
    ]:  # fmt: skip
        table.add_column(name, justify=justify)
    for row in summary_rows(records):
        table.add_row(
            row["data"], row["model"], row["method"], str(row["seed"]),
            f"{row['params_m']:.2f}", f"{row['gflops']:.3f}", f"{row['acc']:.3f}",
            f"{row['auc']:.3f}", f"{row['video_auc']:.3f}",
        )  # fmt: skip
    return table
