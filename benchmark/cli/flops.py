"""``kdbench flops``: parameters and FLOPs of a model at one input size."""

from __future__ import annotations

import argparse

from kdbench.config import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    flops = subparsers.add_parser("flops", help="parameters and FLOPs of a model")
    flops.add_argument("model")
    flops.add_argument("--size", type=int, default=64, help="input height = width")
    flops.add_argument("--num-classes", type=int, default=2)
    flops.add_argument("kwargs", nargs="*", metavar="key=value", help="model keyword arguments")
    flops.set_defaults(func=cmd_flops)


def cmd_flops(args: argparse.Namespace) -> None:
    import yaml

    from kdbench.models import build_model
    from kdbench.train.cost import FLOP_CONVENTION, measure_cost

    kwargs = dict(parse_kwarg(text) for text in args.kwargs)
    model = build_model(args.model, args.num_classes, **kwargs)
    cost = measure_cost(model, (3, args.size, args.size))
    print(
        f"{args.model}: {cost.params / 1e6:.3f} M params, {cost.flops / 1e9:.4f} GFLOPs "
        f"at {args.size}x{args.size} ({FLOP_CONVENTION})"
    )
    if cost.unsupported_ops:
        print("not counted by fvcore: " + yaml.safe_dump(cost.unsupported_ops).strip())


def parse_kwarg(text: str) -> tuple[str, object]:
    """``key=value`` → (key, the value read as YAML)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"model argument {text!r}: expected key=value")
    return key, yaml.safe_load(value)
