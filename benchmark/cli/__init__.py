"""The ``kdbench`` command line: one module per command in this package, each adding its own
parser with ``add_parser(subparsers)``; a new command is a new module here."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from rich.markup import escape

from kdbench.config import ConfigError
from kdbench.console import console
from kdbench.registry import UnknownNameError, load_plugin

DESCRIPTION = "kdbench: train, sweep and report knowledge-distillation benchmarks."


# The positional lists of ``key=value`` words a command may take (run and sweep overrides, model
# keyword arguments): words of that form after an option (``--results out a=1``) join them.
KEY_VALUE_LISTS = ("overrides", "kwargs")


def main(argv: list[str] | None = None) -> int:
    for module in plugins(sys.argv[1:] if argv is None else argv):
        load_plugin(module)  # before the parser is built: its choices list what plugins add
    args = parse(parser(), argv)
    for module in args.plugin:  # an abbreviated --plug is only read by the full parser
        load_plugin(module)
    try:
        return args.func(args) or 0
    except (ConfigError, UnknownNameError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:  # a run in progress has recorded itself as interrupted
        console.print("interrupted")
        return 130


def plugins(argv: list[str]) -> list[str]:
    """The ``--plugin`` modules of ``argv``, read as the full parser reads them."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # --p is not --plugin
    early.add_argument("--plugin", action="append", default=[])
    return early.parse_known_args(argv)[0].plugin


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``p.parse_args``, except that ``key=value`` words left over after the options (argparse
    takes a positional list only once) are added to the command's own list of them."""
    args, extra = p.parse_known_args(argv)
    target = next((name for name in KEY_VALUE_LISTS if hasattr(args, name)), None)
    if extra and target and all("=" in word and not word.startswith("-") for word in extra):
        getattr(args, target).extend(extra)
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


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
