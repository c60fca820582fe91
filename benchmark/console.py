"""The command line's one console (stderr: log lines and errors) and its log line; tables go to
stdout at a readable width."""

from rich.console import Console

console = Console(stderr=True)


def say(text: str) -> None:
    """A log line, printed as is (run labels contain ``[...]``, which rich would eat)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_table(table, width: int = 120) -> None:
    """``table`` on stdout, ``width`` columns wide at least (a wider terminal gets its width)."""
    Console(width=max(width, Console().width)).print(table)
