"""Progress on a terminal: a rich bar while an epoch trains, nothing in logs or CI."""

from __future__ import annotations

import os
import sys

from rich.progress import Progress

from kdbench.console import rich_bar


def show_progress(requested: bool | None) -> bool:
    if requested is not None:
        return requested
    return sys.stderr.isatty() and not os.environ.get("CI")


class progress_bar:
    """A rich progress bar yielding an ``advance()`` callable; a no-op when disabled."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self.enabled, self.label, self.total = enabled, label, total
        self.bar: Progress | None = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        self.bar = rich_bar()
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
