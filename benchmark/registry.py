"""One small generic registry for methods, models and datasets, with did-you-mean errors."""

from __future__ import annotations

import ast
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

    def __init__(
        self,
        kind: str,
        builtin: tuple[str, ...] = (),
        group: str | None = None,
        symbol: str | None = None,
    ) -> None:
        self.kind = kind
        self.builtin = builtin  # modules whose import registers the shipped entries
        self.group = group
        self.symbol = symbol  # the name the shipped modules register through (static_names)
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

    def check_name(self, name: str) -> None:
        """Raise ``UnknownNameError`` for a name nothing registers, without importing the
        shipped modules where that can be known from their source alone: a typo is reported in
        a fraction of a second, not after the seconds torch takes to import. Where it cannot
        (an installed plugin group, names registered in a loop), the registry is loaded."""
        if name in self._entries:
            return
        known = None if self._loaded else self.static_names()
        if known is None:
            self.get(name)
        elif name not in known:
            raise UnknownNameError(unknown_message(self.kind, name, known | set(self._entries)))

    def static_names(self) -> set[str] | None:
        """The names the shipped modules register with a literal ``@REGISTRY.register("…")``,
        read from their source; ``None`` when that may not be all (entry points installed, or a
        shipped module registering a name that is not a literal)."""
        if self.symbol is None or (self.group and entry_points(group=self.group)):
            return None
        found: set[str] = set()
        for path in source_files(self.builtin):
            names = registered_names(path, self.symbol)
            if names is None:
                return None
            found |= names
        return found

    def _load_plugins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtin:
            importlib.import_module(module)
        for ep in entry_points(group=self.group) if self.group else ():
            ep.load()


def source_files(packages: tuple[str, ...]) -> list[Path]:
    """The ``.py`` files of ``packages`` (modules or packages), found without importing them."""
    files = []
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        folders = spec.submodule_search_locations or []
        files += (
            [origin] if not folders else sorted(p for f in folders for p in Path(f).glob("*.py"))
        )
    return files


def registered_names(path: Path, symbol: str) -> set[str] | None:
    """The names ``path`` registers with ``symbol.register(NAME)``, where NAME is a string or a
    module-level string constant; ``None`` if one of those calls takes anything else."""
    tree = ast.parse(path.read_text(), str(path))
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }
    names = set()
    for node in ast.walk(tree):
        func = node.func if isinstance(node, ast.Call) else None
        if not (isinstance(func, ast.Attribute) and func.attr == "register"):
            continue
        if not (isinstance(func.value, ast.Name) and func.value.id == symbol):
            continue
        arg = node.args[0] if node.args else None
        if isinstance(arg, ast.Name) and arg.id in constants:
            names.add(constants[arg.id])
        elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            names.add(arg.value)
        else:
            return None
    return names


def unknown_message(kind: str, name: str, choices, prefix: str = "") -> str:
    """``unknown method 'kdd'; did you mean 'kd'? (known: at, crd, kd, ...)``

    ``prefix`` is shown before ``name`` and every choice but not compared (``train.``).
    """
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else ""
    shown = ", ".join(prefix + c for c in choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f"unknown {kind} {prefix + name!r}{hint} (known: {shown})"


_loaded: list[str] = []  # the plugins this process loaded, as given


def loaded_plugins() -> list[str]:
    """The plugins ``load_plugin`` imported in this process, in order (a process it starts
    for the same run imports them too)."""
    return list(_loaded)


def load_plugin(module: str) -> None:
    """Import ``module`` so that its ``@register`` decorators run: a module name, found on
    ``sys.path`` or in the current folder (``--plugin my_methods``), or a file
    (``--plugin ./my_methods.py``)."""
    if module not in _loaded:
        _loaded.append(module)
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


METHODS: Registry = Registry("method", ("kdbench.methods",), "kdbench.methods", "METHODS")
MODELS: Registry = Registry("model", ("kdbench.models",), "kdbench.models", "MODELS")
DATASETS: Registry = Registry("dataset", ("kdbench.datasets",), "kdbench.datasets", "DATASETS")
DETECTORS: Registry = Registry(
    "detector", ("kdbench.datasets.detectors",), "kdbench.detectors", "DETECTORS"
)
BACKENDS: Registry = Registry(
    "backend",
    (
        "kdbench.sweep.backends.slurm",
        "kdbench.sweep.backends.local",
        "kdbench.sweep.backends.debug",
    ),
    "kdbench.backends",
    "BACKENDS",
)
