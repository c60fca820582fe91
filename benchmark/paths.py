"""Where kdbench reads and writes: the data it ships (presets, reference numbers) and the
folders it writes by default (results, and the cache of what it can recompute)."""

from __future__ import annotations

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

DEFAULT_RESULTS = Path("results")  # runs/, checkpoints/, jobs/: relative to the current folder


def cache_root() -> Path:
    """Where kdbench keeps what it can recompute: ``$KDBENCH_CACHE``, else ``~/.cache/kdbench``."""
    return Path(os.environ.get("KDBENCH_CACHE") or Path.home() / ".cache" / "kdbench")


def package_data(*parts: str) -> Traversable:
    """A file or folder shipped inside the installed package (``benchmark/<parts>`` in a
    checkout), found the same way from a wheel."""
    return resources.files("kdbench").joinpath(*parts)


def package_folder(*parts: str) -> Path:
    """``package_data`` as a filesystem path (the package is installed unzipped)."""
    return Path(str(package_data(*parts)))
