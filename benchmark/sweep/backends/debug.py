"""``debug``: every run in this process, one at a time, teachers first (breakpoints work; on a
terminal an error opens pdb)."""

from __future__ import annotations

from functools import partial

from kdbench.registry import BACKENDS
from kdbench.sweep.backends import Backend, Submitted, Tracker, teachers_first
from kdbench.sweep.runner import run_in_process
from kdbench.sweep.status import RunStatus, classify


@BACKENDS.register("debug")
class Debug(Backend):
    """Trains ``todo`` through ``run_in_process`` and returns when it ended."""

    help = "in this process"

    def submit(self, todo: list[RunStatus], states: list[RunStatus]) -> Submitted:
        with self.sweep.tracker(len(todo)) as tracker:
            skipped = teachers_first(todo, states, partial(self.run, tracker=tracker))
        return Submitted(skipped=skipped)

    def run(self, todo: list[RunStatus], tracker: Tracker) -> list[RunStatus]:
        finished = []
        for status in todo:
            [record] = run_in_process(
                [status.cfg], self.sweep.results, progress=False, log=quiet,
                rerun=self.sweep.rerun, debug=True,
            )  # fmt: skip
            finished.append(classify(status, record, None, None, self.sweep.results))
            tracker.finished(finished[-1])
        return finished


def quiet(line: str) -> None:
    """The tracker logs each run; the runner's own lines would repeat it."""
