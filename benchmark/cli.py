"""The ``kdbench`` command line: list, run, demo, flops, bench."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from kdbench.cli_data import add_commands as add_data_commands
from kdbench.cli_report import add_commands as add_report_commands
from kdbench.cli_sweep import add_commands as add_sweep_commands
from kdbench.config import ConfigError, build_config, load_preset, load_yaml, preset_names
from kdbench.console import console, print_table, say
from kdbench.registry import DATASETS, METHODS, MODELS, UnknownNameError, load_plugin

DEFAULT_RESULTS = Path("results")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for module in args.plugin:
        load_plugin(module)
    try:
        return args.func(args) or 0
    except (ConfigError, UnknownNameError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdbench", description=__doc__)
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, so that the methods/datasets it registers exist",
    )
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list registered methods, models, datasets or presets")
    ls.add_argument(
        "what", nargs="?", default="methods", choices=["methods", "models", "datasets", "presets"]
    )
    ls.add_argument("--pattern", default="*", help="shell-style filter, e.g. 'feat-*'")
    ls.set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="train one run from a config file or a preset")
    run.add_argument("config", nargs="?", help="a YAML run config")
    run.add_argument("--preset", help=f"a shipped run preset ({', '.join(preset_names())})")
    run.add_argument("overrides", nargs="*", metavar="key.sub=value")
    run.add_argument(
        "--rerun", action="store_true", help="train again even if the run is already done"
    )
    add_results(run)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="the main job: teacher, students, methods on SynthFF")
    demo.add_argument("--preset", default="demo", help="the sweep preset to run")
    add_results(demo)
    demo.set_defaults(func=cmd_demo)

    flops = sub.add_parser("flops", help="parameters and FLOPs of a model")
    flops.add_argument("model")
    flops.add_argument("--size", type=int, default=64, help="input height = width")
    flops.add_argument("--num-classes", type=int, default=2)
    flops.add_argument("kwargs", nargs="*", metavar="key=value", help="model keyword arguments")
    flops.set_defaults(func=cmd_flops)

    bench = sub.add_parser("bench", help="per-step time of every method vs the plain-PyTorch bound")
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
    add_report_commands(sub)
    add_data_commands(sub)
    add_sweep_commands(sub)
    return p


def add_results(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        help="folder for runs/ and checkpoints/ (default: ./results)",
    )


def cmd_list(args) -> None:
    from rich.table import Table

    if args.what == "presets":
        for kind in ("run", "sweep"):
            console.print(f"{kind}: {', '.join(preset_names(kind))}")
        return
    registry = {"methods": METHODS, "models": MODELS, "datasets": DATASETS}[args.what]
    table = Table(title=f"kdbench {args.what}")
    table.add_column("name")
    table.add_column("description")
    for name in registry.names(args.pattern):
        entry = registry.get(name)
        table.add_row(name, getattr(entry, "description", "") or first_line(entry.__doc__))
    Console().print(table)
    if args.what == "models":
        console.print("and every timm model name (pretrained=False), e.g. resnet18")


def first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def cmd_run(args) -> int:
    from kdbench.results import check_writable
    from kdbench.sweep import Plan, resolve_teacher, run_local
    from kdbench.train import run, trusted_result, validate

    if args.config and "=" in args.config:  # argparse took the first override for the file
        args.overrides.insert(0, args.config)
        args.config = None
    if args.config and args.preset:
        raise ConfigError("give a config file or --preset NAME, not both")
    if not (args.config or args.preset):
        names = ", ".join(preset_names())
        raise ConfigError(f"what to run: a config file or --preset NAME (run presets: {names})")
    data = load_preset(args.preset) if args.preset else load_yaml(args.config)
    if "grid" in data:
        raise ConfigError("a sweep spec, not a run config: try `kdbench demo --preset NAME`")
    cfg = build_config(data, args.overrides)
    validate(cfg)
    check_writable(args.results)
    plan = Plan()
    cfg = resolve_teacher(cfg, plan)
    for teacher in plan.teachers:
        if not trusted_result(args.results, teacher.run_id(), say, need_weights=True):
            console.print(f"training the teacher first: run {teacher.run_id()}")
        run_local(Plan(teachers=[teacher]), args.results, log=say)
    path = args.results / "runs" / f"{cfg.run_id()}.json"
    try:
        record = run(cfg, args.results, rerun=args.rerun)
    except (ConfigError, UnknownNameError):
        raise
    except Exception as err:  # recorded (with its traceback) in the run's JSON
        console.print(
            f"[red]run {cfg.run_id()} failed:[/red] {escape(f'{type(err).__name__}: {err}')}"
            f"\nrecord: {escape(str(path))}",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    test = record["best"]["test"]
    shown = "  ".join(f"{k}={v:.4f}" for k, v in test.items())
    console.print(f"run {record['run_id']} done: {shown}\nresult: {path}")
    return 0


def cmd_demo(args) -> int:
    from kdbench.cli_report import report_demo, show
    from kdbench.report.render import to_rich
    from kdbench.sweep import expand, load_spec, run_local

    started = time.time()
    plan = expand(load_spec(preset=args.preset))
    console.print(f"demo: {len(plan.teachers)} teacher run(s), {len(plan.students)} student runs")
    records = run_local(plan, args.results, log=say)
    summary = report_demo(args.results, [cfg.run_id() for cfg in plan.runs()])
    for name, table in summary.tables.items():
        print_table(to_rich(table, f"kdbench demo ({args.preset}): {name}"), 160)
    failed = [r for r in records if r.get("status") != "done"]
    console.print(f"wall time {time.time() - started:.0f} s; results in {args.results / 'runs'}")
    if len({cfg.seed for cfg in plan.students}) == 1:
        say(ONE_SEED)
    show(summary)
    return 1 if failed else 0


ONE_SEED = (
    "One seed per method: an illustration, not evidence. `kdbench demo --preset paper` trains "
    "5 seeds in the regime where students converge, with paired tests and the smallest "
    "difference its seeds can detect (see the README)."
)


def cmd_flops(args) -> None:
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
    import yaml

    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"model argument {text!r}: expected key=value")
    return key, yaml.safe_load(value)


def cmd_bench(args) -> int:
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


def print_verdicts(args) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
