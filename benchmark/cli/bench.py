"""``kdbench bench``: per-step time of every method, whole presets, or the precision verdict."""

from __future__ import annotations

import argparse
import os

from kdbench.cli.flops import parse_kwarg
from kdbench.registry import METHODS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench", help="per-step time of every method vs the plain-PyTorch bound"
    )
    bench.add_argument("--methods", nargs="*", help="default: every registered method")
    bench.add_argument("--steps", type=int, default=10)
    bench.add_argument("--batch-size", type=int, default=64)
    bench.add_argument("--size", type=int, default=64)
    bench.add_argument(
        "--suite",
        nargs="+",
        metavar="PRESET",
        help="instead: time these sweep presets end to end from an empty cache (e.g. demo paper)",
    )
    bench.add_argument(
        "--precision",
        nargs="*",
        metavar="MODEL_OR_KEY=VALUE",
        help="instead: time fp32 and bf16 steps as `precision: auto` does and print its verdict; "
        "MODEL [key=value ...] (default: the bench's student, training, and teacher, inference)",
    )
    bench.add_argument(
        "--inference", action="store_true", help="with --precision MODEL: time the teacher's side"
    )
    bench.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from kdbench.train.speed import (
        bench_methods,
        bench_table,
        precision_gap,
        suite_table,
        suite_wall_time,
    )

    if args.precision is not None:
        return print_verdicts(args)
    if args.suite:
        rows = [suite_wall_time(preset) for preset in args.suite]
        Console(width=120).print(suite_table(rows, os.cpu_count()))
        return 1 if any(row.failed for row in rows) else 0
    names = args.methods or METHODS.names()
    rows = bench_methods(names, steps=args.steps, batch_size=args.batch_size, size=args.size)
    Console(width=120).print(bench_table(rows, os.cpu_count()))
    gap = precision_gap(args.size, args.batch_size)
    print(f"teacher bf16 vs fp32 on one random batch: max |logit difference| {gap:.2e}")
    return 0


def print_verdicts(args: argparse.Namespace) -> int:
    from kdbench.train.speed import STUDENT, TEACHER, precision_verdict, verdict_line

    if args.precision:
        name, *pairs = args.precision
        models = [(name, dict(parse_kwarg(p) for p in pairs), not args.inference)]
    else:
        teacher_kwargs = TEACHER[1] | {"image_size": args.size}
        models = [(STUDENT, {}, True), (TEACHER[0], teacher_kwargs, False)]
    for name, kwargs, training in models:
        verdict = precision_verdict(name, kwargs, args.size, args.batch_size, training)
        print(verdict_line(name, args.size, args.batch_size, training, verdict))
    return 0
