"""One small generic registry for methods, models and datasets, with did-you-mean errors."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry key; its message names the closest matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to factories (classes or functions).

    Entries register with ``@REGISTRY.register("name")``; plug-ins outside the repository
    are loaded from the entry-point group ``group`` the first time the registry is read.
    """

    def __init__(self, kind: str, builtin: tuple[str, ...] = (), group: str | None = None) -> None:
        self.kind = kind
        self.builtin = builtin  # modules whose import registers the shipped entries
        self.group = group
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        self._load_plugins()
        if name not in self._entries:
            raise UnknownNameError(unknown_message(self.kind, name, self._entries))
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def names(self, pattern: str = "*") -> list[str]:
        self._load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def _load_plugins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtin:
            importlib.import_module(module)
        for ep in entry_points(group=self.group) if self.group else ():
            ep.load()


def unknown_message(kind: str, name: str, choices, prefix: str = "") -> str:
    """``unknown method 'kdd'; did you mean 'kd'? (known: at, crd, kd, ...)``

    ``prefix`` is shown before ``name`` and every choice but not compared (``train.``).
    """
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else ""
    shown = ", ".join(prefix + c for c in choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f"unknown {kind} {prefix + name!r}{hint} (known: {shown})"


def load_plugin(module: str) -> None:
    """Import ``module`` so that its ``@register`` decorators run: a module name, found on
    ``sys.path`` or in the current folder (``--plugin my_methods``), or a file
    (``--plugin ./my_methods.py``)."""
    path = Path(module)
    if path.suffix == ".py" or path.parent != Path("."):
        import_file(path, module)
        return
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the current folder first
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise SystemExit(f"--plugin {module!r}: cannot import it ({err})") from err


def import_file(path: Path, given: str) -> None:
    """Run the Python file ``path`` as a module named after it (once per process)."""
    if not path.is_file():
        raise SystemExit(f"--plugin {given!r}: no such file (a module name or a .py file)")
    name = f"kdbench_plugin_{path.stem}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise


METHODS: Registry = Registry("method", ("kdbench.methods",), group="kdbench.methods")
MODELS: Registry = Registry("model", ("kdbench.models",), group="kdbench.models")
DATASETS: Registry = Registry("dataset", ("kdbench.datasets",), group="kdbench.datasets")
DETECTORS: Registry = Registry("detector", ("kdbench.datasets.detectors",), "kdbench.detectors")
