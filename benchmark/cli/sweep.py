"""``kdbench sweep plan|run|status``: a grid of runs planned, run (Slurm, local, debug), watched."""

from __future__ import annotations

import argparse
import shlex
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import yaml
from rich.markup import escape
from rich.table import Table

from kdbench.config import ConfigError, preset_names
from kdbench.console import console, print_table, say
from kdbench.paths import DEFAULT_RESULTS
from kdbench.registry import BACKENDS
from kdbench.report.labels import data_label, method_label, model_label
from kdbench.results import check_writable, read_result
from kdbench.sweep.backends import Backend, Submitted, Sweep
from kdbench.sweep.journal import SchedulerError
from kdbench.sweep.plan import Plan, expand
from kdbench.sweep.select import pick
from kdbench.sweep.spec import load_spec
from kdbench.sweep.status import UNDER_WAY, RunStatus, counts, run_states, to_submit

STYLES = {"done": "green", "failed": "red", "running": "yellow", "queued": "cyan", "missing": "dim"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``kdbench sweep`` and its subcommands to the ``kdbench`` parser."""
    sweep = sub.add_parser("sweep", help="plan, run and watch a grid of runs (Slurm or local)")
    commands = sweep.add_subparsers(dest="sweep_command", required=True)

    plan = commands.add_parser("plan", help="list a sweep's runs, their ids and existing results")
    add_spec(plan)
    plan.set_defaults(func=cmd_plan)

    run = commands.add_parser("run", help="submit the runs that have no result yet")
    add_spec(run)
    run.add_argument(
        "--executor",
        choices=BACKENDS.names(),
        default="local",
        help="; ".join(f"{name}: {BACKENDS.get(name).help}" for name in BACKENDS.names())
        + " (default: local)",
    )
    run.add_argument(
        "--profile", type=Path, help="cluster profile for slurm, e.g. slurm/local.yaml"
    )
    run.add_argument("--wait", action="store_true", help="slurm: block until every run finished")
    run.add_argument("--retry-failed", action="store_true", help="also resubmit failed runs")
    run.add_argument(
        "--rerun", action="store_true", help="train every run again, finished ones included"
    )
    run.add_argument(
        "--parallel", type=int, help="local: runs at once (default: one per GPU, or 1)"
    )
    run.add_argument("--poll", type=float, default=10, help="seconds between checks with --wait")
    run.set_defaults(func=cmd_run)

    status = commands.add_parser("status", help="done / running / queued / failed, per run")
    add_spec(status)
    status.set_defaults(func=cmd_status)

    pick = commands.add_parser(
        "pick", help="per method, the setting with the best validation score (a tuning sweep)"
    )
    add_spec(pick)
    pick.add_argument("--metric", default="auc", help="validation metric (default: auc)")
    pick.set_defaults(func=cmd_pick)


def add_spec(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", help="a sweep YAML")
    p.add_argument("--preset", help=f"a shipped sweep ({', '.join(preset_names('sweep'))})")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="changes to the sweep, e.g. base.train.epochs=1 grid.seed=[0]",
    )
    p.add_argument(
        "--results", type=Path, default=DEFAULT_RESULTS, help="runs/, checkpoints/, jobs/ here"
    )


def load_plan(args) -> tuple[str, Plan]:
    """The sweep's name and its plan, every run validated before anything is written."""
    from kdbench.train import validate

    if args.spec and "=" in args.spec:  # argparse took the first override for the file
        args.overrides.insert(0, args.spec)
        args.spec = None
    spec = load_spec(args.spec, args.preset, args.overrides)
    plan = expand(spec)
    for cfg in plan.runs():
        validate(cfg)
    return spec.get("name") or Path(args.spec).stem, plan


def cmd_plan(args) -> int:
    name, plan = load_plan(args)
    states = run_states(plan, args.results, scheduler=False)
    title = f"sweep {name}: {len(plan.teachers)} teacher(s), {len(plan.students)} student runs"
    print_states(states, title)
    return 0


def cmd_status(args) -> int:
    name, plan = load_plan(args)
    try:
        states = run_states(plan, args.results)
    except SchedulerError as err:
        console.print(f"[yellow]warning:[/yellow] {escape(str(err))}; showing results only")
        states = run_states(plan, args.results, scheduler=False)
    print_states(states, f"sweep {name} in {args.results}")
    return 0


def cmd_pick(args) -> int:
    """Score every finished run of the sweep on its validation split and name the winner per
    method, with the ``methods:`` block that makes a sweep use it."""
    name, plan = load_plan(args)
    records = [read_result(args.results, cfg.run_id()) for cfg in plan.students]
    done = [r for r in records if r and r.get("status") == "done"]
    if not done:
        raise ConfigError(f"sweep {name}: no finished runs in {args.results} to pick from")
    candidates = pick(done, args.metric)
    table = Table(title=f"sweep {name}: validation {args.metric} at each run's best epoch")
    for column in ("method", "setting", "seeds", f"val {args.metric}", "chosen"):
        table.add_column(column)
    for c in candidates:
        spread = f" ± {statistics.stdev(c.scores):.4f}" if len(c.scores) > 1 else ""
        shown = ", ".join(f"{k}={v}" for k, v in c.setting.items()) or "(one setting)"
        table.add_row(c.method, escape(shown), str(len(c.scores)), f"{c.mean:.4f}{spread}",
                      "*" if c.chosen else "")  # fmt: skip
    print_table(table, 120)
    chosen = {c.method: c.setting for c in candidates if c.chosen and c.setting}
    print(yaml.safe_dump({"methods": chosen}, sort_keys=True).strip())
    missing = len(plan.students) - len(done)
    if missing:
        say(f"{missing} of {len(plan.students)} runs have no finished result: picked from the rest")
    return 0


def cmd_run(args) -> int:
    name, plan = load_plan(args)
    backend = BACKENDS.get(args.executor)(sweep_of(args, name, plan))
    check_writable(args.results)
    started = time.time()
    try:
        states = run_states(plan, args.results)
    except SchedulerError as err:  # unsure what is in flight, so submit nothing twice
        raise ConfigError(f"cannot tell which runs are queued or running: {err}") from err
    todo = to_submit(states, args.retry_failed, args.rerun)
    say(f"sweep {name}: {len(states)} runs; {tally(states)}; submitting {len(todo)}")
    try:
        submitted = backend.submit(todo, states)
        report_skipped(submitted.skipped)
        if backend.detached and not wait_for_jobs(args, backend, states, submitted):
            return 0
    except SchedulerError as err:  # sbatch refused the jobs, or sacct stopped answering
        raise ConfigError(str(err)) from err
    except KeyboardInterrupt:
        if backend.detached:
            say(f"stopped waiting; the jobs go on: kdbench sweep status {sweep_args(args)}")
        else:
            say("interrupted; unfinished runs resume from their last epoch on the next sweep run")
        return 130
    return finish(run_states(plan, args.results), args.results, time.time() - started)


def sweep_of(args, name: str, plan: Plan) -> Sweep:
    from kdbench.train import show_progress  # imports torch

    return Sweep(
        name, plan, args.results, plugins=args.plugin, rerun=args.rerun, parallel=args.parallel,
        profile=args.profile, poll_s=args.poll, progress=show_progress(None),
    )  # fmt: skip


def wait_for_jobs(args, backend: Backend, states: list[RunStatus], submitted: Submitted) -> bool:
    """With ``--wait``, block until every job of the sweep ended. False when it returned with
    jobs under way."""
    under_way = {s.run_id for s in states if s.state in UNDER_WAY}
    under_way |= {job.run_id for job in submitted.jobs}
    if under_way and not args.wait:
        say(f"watch: kdbench sweep status {sweep_args(args)}")
        return False
    backend.wait(under_way)
    return True


def report_skipped(skipped: list[tuple[RunStatus, str]]) -> None:
    for status, reason in skipped:
        say(f"not run: {status.run_id} (student): {reason}")


def finish(states: list[RunStatus], results: Path, took: float) -> int:
    """The closing lines: the tally, where results are, the report command; 1 if any failed."""
    say(f"{len(states)} runs: {tally(states)}; wall time {took:.0f} s")
    say(f"results: {Path(results) / 'runs'}")
    say(f"report:  kdbench report {results} --out {Path(results) / 'report'}")
    return 1 if any(s.state == "failed" for s in states) else 0


def tally(states: list[RunStatus]) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts(states).items() if n)


def sweep_args(args) -> str:
    """The spec, preset, overrides and results of this command, to repeat in a hint."""
    parts = [args.spec] if args.spec else [f"--preset {args.preset}"]
    parts += [*map(shlex.quote, args.overrides), f"--results {shlex.quote(str(args.results))}"]
    return " ".join(parts)


def print_states(states: list[RunStatus], title: str) -> None:
    table = Table(title=title, caption=tally(states))
    for column in ("run", "role", "data", "model", "method", "seed", "state", "detail"):
        table.add_column(column, no_wrap=column in ("run", "state"))
    for s in states:
        cfg, style = asdict(s.cfg), STYLES[s.state]
        table.add_row(
            s.run_id,
            s.role,
            data_label(cfg["data"]),
            model_label(cfg["student"]),
            escape(method_label(cfg["method"])),
            str(s.cfg.seed),
            f"[{style}]{s.state}[/{style}]",
            escape(s.detail),
        )
    print_table(table, 160)
