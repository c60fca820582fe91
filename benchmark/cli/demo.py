"""``kdbench demo``: the main job (a teacher, students, methods on SynthFF), its tables and its
report."""

from __future__ import annotations

import argparse
import time

from kdbench.cli.report import report_demo, show
from kdbench.cli.run import add_results
from kdbench.console import console, print_table, say

ONE_SEED = (
    "One seed per method: an illustration, not evidence. `kdbench demo --preset paper` trains "
    "5 seeds in the regime where students converge, with paired tests and the smallest "
    "difference its seeds can detect (see the README)."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="the main job: teacher, students, methods on SynthFF")
    demo.add_argument("--preset", default="demo", help="the sweep preset to run")
    add_results(demo)
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from kdbench.report.render import to_rich
    from kdbench.sweep.plan import expand
    from kdbench.sweep.runner import run_in_process
    from kdbench.sweep.spec import load_spec

    started = time.time()
    plan = expand(load_spec(preset=args.preset))
    console.print(f"demo: {len(plan.teachers)} teacher run(s), {len(plan.students)} student runs")
    records = run_in_process(plan.runs(), args.results, log=say)
    summary = report_demo(args.results, [cfg.run_id() for cfg in plan.runs()])
    for name, table in summary.tables.items():
        print_table(to_rich(table, f"kdbench demo ({args.preset}): {name}"), 160)
    failed = [r for r in records if r.get("status") != "done"]
    console.print(f"wall time {time.time() - started:.0f} s; results in {args.results / 'runs'}")
    if len({cfg.seed for cfg in plan.students}) == 1:
        say(ONE_SEED)
    show(summary)
    return 1 if failed else 0
