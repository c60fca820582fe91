"""Plain YAML data to typed dataclasses: files (``safe_load``), ``key.sub=value`` overrides,
and the type check of every value against its field's annotation."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from kdbench.errors import ConfigError
from kdbench.registry import unknown_message


def from_dict(cls: type, data: dict | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            prefix = f"{where}." if where else ""
            raise ConfigError(unknown_message("config key", key, names, prefix))
        values[key] = coerce(hints[key], value, path)
    return cls(**values)


def coerce(hint: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``hint`` (nested dataclasses built recursively)."""
    options = typing.get_args(hint) if is_union(hint) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{path}: expected a value, got null")
    for option in options:
        if dataclasses.is_dataclass(option):
            return from_dict(option, value, path)
    for option in options:
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if base is float and str not in options and isinstance(value, str):
            number = as_float(value)  # YAML 1.1 reads 1e-3 and 1.0e6 as strings
            if number is not None:
                return number
        if isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{path}: expected {expected}, got {value!r}")


def as_float(text: str) -> float | None:
    """``text`` as Python's ``float()`` reads it, or None."""
    try:
        return float(text)
    except ValueError:
        return None


def is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=0.01`` -> (["train", "lr"], 0.01); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected key.sub=value, e.g. train.epochs=5")
    return key.split("."), yaml.safe_load(raw) if raw else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of ``data`` with each ``key.sub=value`` set (missing sections created)."""
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        set_path(data, keys, value)
    return data


def set_path(data: dict, keys: list[str], value: Any) -> None:
    """Set ``data[k1][k2]… = value``; where a mapping already holds a dotted key that the
    remaining keys spell (a sweep's grid axis ``train.lr``), that key is the one set."""
    node = data
    for i, key in enumerate(keys[:-1]):
        dotted = ".".join(keys[i:])
        if dotted in node:
            node[dotted] = value
            return
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def load_yaml(path: str | Path, empty_ok: bool = False) -> dict:
    """A YAML file as plain data (``safe_load``: tags that would run code are rejected). A
    missing, unreadable, malformed or (unless ``empty_ok``) empty file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None and empty_ok:
        return {}
    if data is None:
        raise ConfigError(
            f"{path}: the file is empty (expected a mapping, e.g. train: {{epochs: 5}})"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data
