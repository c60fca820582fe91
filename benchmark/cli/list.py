"""``kdbench list``: registered methods (``-v``: their hyper-parameters), models, datasets,
face detectors (``kdbench data prepare --detector``), sweep backends (``--executor``), the
shipped presets, or a model's features with their shapes."""

from __future__ import annotations

import argparse
import inspect
import re

from kdbench.config import preset_names
from kdbench.console import console, print_table
from kdbench.registry import BACKENDS, DATASETS, DETECTORS, METHODS, MODELS
from kdbench.schema import parse_override

WHAT = ["methods", "models", "datasets", "detectors", "backends", "presets", "features"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    ls = subparsers.add_parser(
        "list",
        help="list methods, models, datasets, face detectors, sweep backends, presets, or a "
        "model's features",
    )
    ls.add_argument("what", nargs="?", default="methods", choices=WHAT)
    ls.add_argument("model", nargs="?", help="features: the model (a kdbench or timm name)")
    ls.add_argument("kwargs", nargs="*", metavar="key=value", help="features: model kwargs")
    ls.add_argument("--pattern", default="*", help="shell-style filter, e.g. 'feat-*'")
    ls.add_argument("-v", "--verbose", action="store_true", help="methods: hyper-parameters")
    ls.add_argument("--size", type=int, default=64, help="features: the input side (64)")
    ls.add_argument("--preact", action="store_true", help="features: add stageK.preact")
    ls.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> None:
    if args.what == "presets":
        for kind in ("run", "sweep"):
            console.print(f"{kind}: {', '.join(preset_names(kind))}")
        return
    if args.what == "features":
        list_features(args)
        return
    from rich.table import Table

    registries = {"methods": METHODS, "models": MODELS, "datasets": DATASETS}
    registries |= {"detectors": DETECTORS, "backends": BACKENDS}
    registry = registries[args.what]
    table = Table(title=f"kdbench {args.what}")
    table.add_column("name")
    table.add_column("description")
    for name in registry.names(args.pattern):
        entry = registry.get(name)
        about = getattr(entry, "description", "") or getattr(entry, "help", "")
        table.add_row(name, about or first_line(entry.__doc__))
        if args.verbose:
            for param, default, meaning in hyper_parameters(entry):
                table.add_row(f"  {param} = {default!r}", meaning)
    print_table(table, 160)
    if args.what == "models":
        console.print("and every timm model name (pretrained=False), e.g. resnet18")


def hyper_parameters(entry) -> list[tuple[str, object, str]]:
    """``(name, default, one-line meaning)`` of each keyword hyper-parameter: the defaults a run
    id resolves (``identity.defaults``), the meaning from the ``__init__`` docstring sentence
    that names it."""
    from kdbench.identity import defaults

    docs = [entry.__init__, entry] if inspect.isclass(entry) else [entry]
    doc = " ".join(" ".join((inspect.getdoc(d) or "").split()) for d in docs)
    return [(name, value, meaning(doc, name)) for name, value in defaults(entry).items()]


def meaning(doc: str, name: str) -> str:
    """The first sentence of ``doc`` that names ``name`` (as ``name`` or as a word), cut to
    100 characters."""
    sentences = re.split(r"(?<=[.;])\s+", doc)
    for named in (lambda t: f"``{name}``" in t, lambda t: re.search(rf"\b{name}\b", t)):
        for sentence in filter(named, sentences):
            text = sentence.replace("``", "").removeprefix("- ")
            return text if len(text) <= 100 else text[:99] + "…"
    return ""


def list_features(args: argparse.Namespace) -> None:
    """Every feature of ``model`` on a ``size``×``size`` input: name, shape, and timm's
    ``feature_info`` (channels, reduction, module) where it has one."""
    if not args.model:
        raise SystemExit("kdbench list features MODEL [key=value ...] [--size N]")
    import torch
    from rich.table import Table

    from kdbench.models import build_model
    from kdbench.models.preact import enable_preact

    kwargs = {".".join(k): v for k, v in map(parse_override, args.kwargs)}
    model = build_model(args.model, 2, **kwargs).eval()
    if args.preact:
        enable_preact(model)
    with torch.no_grad():
        out = model(torch.zeros(2, 3, args.size, args.size))
    info = getattr(getattr(model, "body", None), "feature_info", None)
    stages = out.stage_names() if info is not None else []
    table = Table(title=f"{args.model} features at {args.size}×{args.size} (batch 2)")
    for column in ("feature", "shape", "timm module"):
        table.add_column(column)
    for name, value in out.features.items():
        table.add_row(name, str(list(value.shape)), timm_module(info, name, stages))
    table.add_row("logits", str(list(out.logits.shape)), "")
    print_table(table, 120)
    print(layout_line(out))


def layout_line(out) -> str:
    """The layout the model declares (``Output``): what stage methods pair, the embedding."""
    branches = "".join(f"; branch {b}: {', '.join(s)}" for b, s in out.branches.items())
    return f"stages: {', '.join(out.stage_names())}; embedding: {out.embedding}{branches}"


def timm_module(info, name: str, stages: list[str]) -> str:
    """timm's name for the module that outputs stage ``name`` (the K-th of ``stages`` is
    ``feature_info[K - 1]``)."""
    if info is None or name not in stages or stages.index(name) >= len(info):
        return ""
    entry = info[stages.index(name)]
    return f"{entry['module']} (reduction {entry['reduction']})"


def first_line(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.;:])\s", paragraph, maxsplit=1)[0]
    return sentence.rstrip(";:").replace("``", "`")
