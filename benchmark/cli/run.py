"""``kdbench run``: train one run from a config file or a preset (its teacher first)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from kdbench.config import ConfigError, build_config, load_preset, preset_names
from kdbench.console import console, say
from kdbench.paths import DEFAULT_RESULTS
from kdbench.registry import UnknownNameError
from kdbench.schema import load_yaml


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="train one run from a config file or a preset")
    run.add_argument("config", nargs="?", help="a YAML run config")
    run.add_argument("--preset", help=f"a shipped run preset ({', '.join(preset_names())})")
    run.add_argument("overrides", nargs="*", metavar="key.sub=value")
    run.add_argument(
        "--rerun", action="store_true", help="train again even if the run is already done"
    )
    add_results(run)
    run.set_defaults(func=cmd_run)


def add_results(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        help="folder for runs/ and checkpoints/ (default: ./results)",
    )


def cmd_run(args: argparse.Namespace) -> int:
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
    cfg = build_config(data, args.overrides)  # a typo fails here, before torch is imported
    from kdbench.results import check_writable
    from kdbench.sweep.plan import Plan, resolve_teacher
    from kdbench.sweep.runner import run_in_process
    from kdbench.train import run, trusted_result, validate
    from kdbench.train.distributed import world_from_env

    validate(cfg)
    check_writable(args.results)
    plan = Plan()
    cfg = resolve_teacher(cfg, plan)
    for teacher in plan.teachers:
        if not trusted_result(args.results, teacher.run_id(), say, need_weights=True):
            console.print(f"training the teacher first: run {teacher.run_id()}")
        run_in_process([teacher], args.results, log=say)
    path = args.results / "runs" / f"{cfg.run_id()}.json"
    main = world_from_env().main  # under torchrun, one process of the run reports
    try:
        record = run(cfg, args.results, rerun=args.rerun)
    except (ConfigError, UnknownNameError):
        raise
    except Exception as err:  # recorded (with its traceback) in the run's JSON
        if not main:
            return 1
        console.print(
            f"[red]run {cfg.run_id()} failed:[/red] {escape(f'{type(err).__name__}: {err}')}"
            f"\nrecord: {escape(str(path))}",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    if not main:
        return 0
    test = record["best"]["test"]
    shown = "  ".join(f"{k}={v:.4f}" for k, v in test.items())
    console.print(f"run {record['run_id']} done: {shown}\nresult: {path}")
    return 0
