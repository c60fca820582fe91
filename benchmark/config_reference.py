"""The config reference: every key of a run config with its type, default and meaning, written
from the dataclasses of ``kdbench.config`` and the comments beside their fields, so that the
README's table (tested to equal this) cannot drift from the code.

``python -m kdbench.config_reference`` prints it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing

from kdbench import config

SECTIONS = (
    ("", config.RunConfig),
    ("student.", config.ModelConfig),
    ("teacher.", config.TeacherConfig),
    ("method.", config.MethodConfig),
    ("data.", config.DataConfig),
    ("data.test.", config.DatasetRef),
    ("train.", config.TrainConfig),
)
NESTED = {config.ModelConfig, config.TeacherConfig, config.MethodConfig, config.DataConfig}
NESTED |= {config.DatasetRef, config.TrainConfig}


def reference() -> str:
    """The Markdown table: key, type, default, meaning."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for prefix, cls in SECTIONS:
        notes = field_notes(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.type in NESTED or hints[f.name] in NESTED or is_nested(hints[f.name]):
                continue
            lines.append(row(prefix + f.name, hints[f.name], f, notes.get(f.name, "")))
    return "\n".join(lines) + "\n"


def is_nested(hint) -> bool:
    return any(arg in NESTED for arg in typing.get_args(hint))


def row(key: str, hint, f: dataclasses.Field, note: str) -> str:
    return f"| `{key}` | {type_name(hint)} | {default(f)} | {note} |"


def type_name(hint) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    name = getattr(args[0] if args else hint, "__name__", str(hint))
    return f"{name} or null" if len(typing.get_args(hint)) > len(args) else name


def default(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:
        return f"`{f.default_factory()!r}`"
    return "`null`" if f.default is None else f"`{f.default!r}`"


def field_notes(cls: type) -> dict[str, str]:
    """``{field: its comments}``: the ones on the lines above it and the one after it (from
    the class that declares the field last, base classes first)."""
    notes = {}
    for base in reversed(cls.__mro__[:-1]):
        notes |= own_notes(base)
    return notes


def own_notes(cls: type) -> dict[str, str]:
    source = inspect.getsource(cls).splitlines()
    tree = ast.parse("\n".join(source))
    notes = {}
    for node in tree.body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = comments_above(source, node.lineno - 1)
            line = source[node.lineno - 1]
            after = line.split("  # ", 1)[1] if "  # " in line else ""
            notes[node.target.id] = " ".join(filter(None, [*above, after])).replace("|", "\\|")
    return notes


def comments_above(source: list[str], index: int) -> list[str]:
    found = []
    while index > 0 and source[index - 1].strip().startswith("#"):
        index -= 1
        found.insert(0, source[index].strip().lstrip("#").strip())
    return found


if __name__ == "__main__":
    print(reference(), end="")
