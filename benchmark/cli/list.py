"""``kdbench list``: registered methods, models, datasets, or the shipped presets."""

from __future__ import annotations

import argparse

from kdbench.config import preset_names
from kdbench.console import console
from kdbench.registry import DATASETS, METHODS, MODELS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    ls = subparsers.add_parser("list", help="list registered methods, models, datasets or presets")
    ls.add_argument(
        "what", nargs="?", default="methods", choices=["methods", "models", "datasets", "presets"]
    )
    ls.add_argument("--pattern", default="*", help="shell-style filter, e.g. 'feat-*'")
    ls.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    if args.what == "presets":
        for kind in ("run", "sweep"):
            console.print(f"{kind}: {', '.join(preset_names(kind))}")
        return
    registry = {"methods": METHODS, "models": MODELS, "datasets": DATASETS}[args.what]
    table = Table(title=f"kdbench {args.what}")
    table.add_column("name")
    table.add_column("description")
    for name in registry.names(args.pattern):
        entry = registry.get(name)
        table.add_row(name, getattr(entry, "description", "") or first_line(entry.__doc__))
    Console().print(table)
    if args.what == "models":
        console.print("and every timm model name (pretrained=False), e.g. resnet18")


def first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""
