"""A sweep spec: read from a file or a sweep preset, merged over the preset it extends, changed
by ``key.sub=value`` overrides, and checked."""

from __future__ import annotations

import copy
from pathlib import Path

from kdbench.config import ConfigError, load_preset
from kdbench.schema import apply_overrides, load_yaml

SPEC_KEYS = ("name", "description", "extends", "base", "grid", "methods", "extra")


def load_spec(
    path: str | Path | None = None, preset: str | None = None, overrides: list[str] = ()
) -> dict:
    """A sweep spec from a file or a sweep preset, then ``key.sub=value`` overrides.

    ``extends: PRESET`` starts from that sweep preset; ``base: NAME`` takes the run preset NAME
    as the base config. Overrides address the spec, e.g. ``base.train.epochs=1`` or
    ``grid.seed=[0,1]``.
    """
    if bool(path) == bool(preset):
        raise ConfigError("give either a sweep file or --preset NAME (not both)")
    spec = load_preset(preset, "sweep") if preset else load_yaml(path)
    check_keys(spec)
    if "extends" in spec:
        parent = load_spec(preset=spec.pop("extends"))
        spec = merge({k: v for k, v in parent.items() if k not in ("name", "description")}, spec)
    if isinstance(spec.get("base"), str):
        spec["base"] = load_preset(spec["base"], "run")
    spec = apply_overrides(spec, list(overrides))
    check_keys(spec)
    check_shape(spec)
    return spec


def check_keys(spec: dict) -> None:
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"sweep keys {unknown} are not known (expected: {', '.join(SPEC_KEYS)})")


def check_shape(spec: dict) -> None:
    if not isinstance(spec.get("base", {}), dict):
        raise ConfigError(f"base: expected a mapping or a run preset's name, got {spec['base']!r}")
    if not isinstance(spec.get("grid", {}), dict):
        raise ConfigError(f"grid: expected a mapping of keys to lists, got {spec['grid']!r}")
    for key, values in spec.get("grid", {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key}: expected a non-empty list of values, got {values!r}")
    extra = spec.get("extra", [])
    if not isinstance(extra, list) or not all(isinstance(e, dict) for e in extra):
        raise ConfigError(f"extra: expected a list of mappings (one per run), got {extra!r}")


def merge(parent: dict, child: dict) -> dict:
    """``child`` over ``parent``: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
