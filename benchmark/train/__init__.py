"""One run: build it from its config, train it (resuming), evaluate it and record it.

``run`` is the entry point; the sweep and the command line also check configs with
``validate`` and reuse finished runs with ``trusted_result``. The names load on first use, so
that importing one module of the package (``kdbench.train.cost`` for ``kdbench flops``) does
not import the whole training stack.
"""

from kdbench.lazy import lazy_exports

HOME = {
    "run": "loop",
    "train": "loop",
    "show_progress": "progress",
    "trusted_result": "record",
    "validate": "setup",
}
__all__ = sorted(HOME)


__getattr__, __dir__ = lazy_exports(__name__, HOME)
