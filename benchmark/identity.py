"""What a run's id is made of: its config with every default filled in, and the code version of
the pieces that compute its result (the method, kdbench's own models, the dataset's format).

A changed default or a changed loss therefore gives a new run id instead of the old result.

A piece's code version is its module's declared ``RESULT_VERSION`` when it has one (every shipped
method, model and dataset does, so that moving code around keeps the ids; a change to what the
module computes sets a new one, and ``tests/test_run_ids.py`` notices an edit that forgot to),
else the digest of its module's source and of every kdbench module it uses, transitively (a
plugin's default: any edit to it or to what it uses gives new ids).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import sys
import types
from functools import cache, partial
from typing import Any

from kdbench.registry import DATASETS, METHODS, MODELS
from kdbench.results import package_version

# Modules that only describe or look things up: editing them changes no result.
NOT_CODE = ("kdbench.config", "kdbench.registry", "kdbench.identity")
# Arguments the harness passes itself: not hyper-parameters.
HARNESS_ARGUMENTS = ("self", "ctx", "split", "num_classes")


def resolved(data: dict) -> dict:
    """A config mapping (``asdict(RunConfig)``) with the defaults of its method's parameters,
    its datasets' parameters and its kdbench models' keyword arguments filled in."""
    data = copy.deepcopy(data)
    method = data["method"]
    method["params"] = defaults(METHODS.get(method["name"])) | method["params"]
    for ref in filter(None, (data["data"], data["data"].get("test"))):
        ref["params"] = defaults(DATASETS.get(ref["name"])) | ref["params"]
    for model in filter(None, (data["student"], data.get("teacher"))):
        if model["name"] in MODELS:
            model["kwargs"] = defaults(MODELS.get(model["name"])) | model["kwargs"]
    return data


def code_version(data: dict) -> dict[str, str]:
    """The version of each piece of code that computes the result of config ``data``."""
    pieces = {
        "method": piece_version(METHODS.get(data["method"]["name"])),
        "data": dataset_version(data["data"]["name"]),
        "student": model_version(data["student"]["name"]),
    }
    if data["data"].get("test"):
        pieces["test_data"] = dataset_version(data["data"]["test"]["name"])
    if data.get("teacher"):
        pieces["teacher"] = model_version(data["teacher"]["name"])
    for role in ("student", "teacher"):
        if (data.get(role) or {}).get("pretrained"):
            from kdbench.models.pretrained import weights_digest

            pieces[f"{role}_pretrained"] = weights_digest(data[role]["pretrained"])
    return pieces


def defaults(fn: Any) -> dict:
    """``{name: default}`` of the hyper-parameters ``fn`` (a class or a factory) takes: its
    keyword parameters with defaults, less what the harness passes itself."""
    params = inspect.signature(fn).parameters.values()
    return {
        p.name: jsonable(p.default)
        for p in params
        if p.default is not p.empty
        and p.name not in HARNESS_ARGUMENTS
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def jsonable(value: Any) -> Any:
    """Defaults as a YAML/JSON config would hold them (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def dataset_version(name: str) -> str:
    """A dataset's declared ``format_version`` (bumped whenever its items change), else the
    version of the code that reads it."""
    cls = DATASETS.get(name)
    declared = getattr(cls, "format_version", None)
    return f"format-{declared}" if declared is not None else piece_version(cls)


def model_version(name: str) -> str:
    """kdbench's own model code; timm models add timm's version."""
    if name in MODELS:
        return piece_version(MODELS.get(name))
    from kdbench.models.timm_net import TimmNet

    return f"{piece_version(TimmNet)}+timm-{package_version('timm')}"


def piece_version(obj: Any) -> str:
    """The ``RESULT_VERSION`` of the module defining ``obj``, else its :func:`source_digest`."""
    declared = getattr(sys.modules[defining_module(obj)], "RESULT_VERSION", None)
    return str(declared) if declared is not None else source_digest(obj)


def source_digest(obj: Any) -> str:
    """sha256 (12 hex) of the source of ``obj``'s module and of the kdbench modules it uses."""
    return module_digest(defining_module(obj))


def defining_module(obj: Any) -> str:
    while isinstance(obj, partial):
        obj = obj.func
    return obj.__module__


@cache
def module_digest(name: str) -> str:
    sha = hashlib.sha256()
    for module in sorted(code_modules(sys.modules[name]), key=lambda m: m.__name__):
        sha.update(module.__name__.encode())
        sha.update(module_source(module).encode())
    return sha.hexdigest()[:12]


def code_modules(module: types.ModuleType) -> set[types.ModuleType]:
    """``module`` and every kdbench module its globals come from, and theirs (transitively)."""
    found, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        todo.extend(uses(current))
    return found


def uses(module: types.ModuleType) -> list[types.ModuleType]:
    """The kdbench code modules that ``module``'s globals come from."""
    owners = (v if isinstance(v, types.ModuleType) else module_of(v) for v in vars(module).values())
    return [m for m in owners if m is not None and is_code(m.__name__)]


def module_of(value: Any) -> types.ModuleType | None:
    name = getattr(value, "__module__", None)
    return sys.modules.get(name) if isinstance(name, str) else None


def is_code(name: str) -> bool:
    return (name == "kdbench" or name.startswith("kdbench.")) and name not in NOT_CODE


def module_source(module: types.ModuleType) -> str:
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):  # no source file (frozen, interactive): its name only
        return module.__name__
