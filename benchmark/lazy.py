"""Names a package exports from its submodules, each imported on first use (PEP 562), so that
importing one light module of the package does not import the heavy ones."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> tuple[Callable, Callable]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, where ``homes`` maps each exported
    name to the submodule that defines it: ``__getattr__, __dir__ = lazy_exports(...)``."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{homes[name]}"), name)

    def __dir__() -> list[str]:
        return sorted([*vars(import_module(package)), *homes])

    return __getattr__, __dir__
