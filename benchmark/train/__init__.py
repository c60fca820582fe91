"""One run: build it from its config, train it (resuming), evaluate it and record it.

``run`` is the entry point; the sweep and the command line also check configs with
``validate`` and reuse finished runs with ``trusted_result``.
"""

from kdbench.train.loop import run, train
from kdbench.train.progress import show_progress
from kdbench.train.record import trusted_result
from kdbench.train.setup import validate

__all__ = ["run", "show_progress", "train", "trusted_result", "validate"]
