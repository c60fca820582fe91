"""The ``kdbench`` command line: one module per command in this package, each adding its own
parser with ``add_parser(subparsers)``; a new command is a new module here."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

from rich.markup import escape

from kdbench.config import ConfigError
from kdbench.console import console
from kdbench.registry import UnknownNameError, load_plugin

DESCRIPTION = "kdbench: train, sweep and report knowledge-distillation benchmarks."


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for module in args.plugin:
        load_plugin(module)
    try:
        return args.func(args) or 0
    except (ConfigError, UnknownNameError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:  # a run in progress has recorded itself as interrupted
        console.print("interrupted")
        return 130


def commands() -> list[str]:
    """The command modules of this package, by name (each is one ``kdbench`` command)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kdbench",
        description=DESCRIPTION,
        epilog="`kdbench COMMAND --help` shows a command's options.",
    )
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, so that the methods/datasets it registers exist",
    )
    sub = p.add_subparsers(dest="command", required=True, title="commands")
    for name in commands():
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return p
