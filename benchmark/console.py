"""The command line's one console (stderr: log lines and errors), its log line and its progress
bar; tables go to stdout at a readable width."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def say(text: str) -> None:
    """A log line, printed as is (run labels contain ``[...]``, which rich would eat)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_table(table, width: int = 120) -> None:
    """``table`` on stdout, ``width`` columns wide at least (a wider terminal gets its width)."""
    Console(width=max(width, Console().width)).print(table)


def rich_bar(on: Console | None = None) -> Progress:
    """The project's progress bar: label, bar, done/total and elapsed time; gone once stopped."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    return Progress(*columns, TimeElapsedColumn(), console=on, transient=True)
