"""Step-time benchmark: every method's training step against the plain-PyTorch lower bound.

The bound is what any distillation step must at least do: a no-grad teacher forward, a student
forward and backward (cross-entropy) and an optimizer step, written in plain PyTorch.
All timings come from one process on one synthetic batch, so ratios are comparable.
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.table import Table
from torch import nn

from kdbench.config import RunConfig, load_preset
from kdbench.method import build_method
from kdbench.models import build_model
from kdbench.registry import METHODS
from kdbench.train.device import place, to_device
from kdbench.train.optim import make_optimizer
from kdbench.train.precision import (
    compute_dtype,
    device_name,
    dtype_name,
    interleaved_ms,
    native_bf16,
    time_dtypes,
    verdict_from,
)
from kdbench.train.setup import Setup, network_context, request_preact
from kdbench.train.step import train_step
from kdbench.train.teacher import CachedTeacher, LiveTeacher

PAPER = load_preset("paper", "sweep")["base"]  # the models of the seed paper's sweep
TEACHER = (PAPER["teacher"]["name"], PAPER["teacher"]["kwargs"])
STUDENT = PAPER["student"]["name"]
CPU = torch.device("cpu")


@dataclass
class BenchRow:
    method: str
    live_ms: float  # median ms per step, teacher run live (precision "auto" for both models)
    vs_bound: float  # live step / the fp32 plain-PyTorch step (teacher forward + student step)
    cached_ms: float  # median ms per step, teacher outputs from the cache
    cached_vs_vanilla: float  # cached step / the vanilla student's step (no teacher at all)


@dataclass
class SuiteRow:
    preset: str
    runs: int
    failed: int
    wall_s: float  # the whole sweep, from an empty cache (SynthFF generation included)
    teacher_s: float  # summed wall time of the teacher runs
    student_s: float  # summed wall time of the student runs
    student_median_s: float


def paper_teacher(size: int) -> nn.Module:
    """The paper preset's teacher (random weights) for ``size`` x ``size`` inputs, in eval mode."""
    return build_model(TEACHER[0], 2, **(TEACHER[1] | {"image_size": size})).eval()


def synthetic_batch(batch_size: int, size: int) -> dict:
    """One batch keyed like a fixed-view dataset's: sample ``i`` of the batch is row ``i``."""
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(batch_size, 3, size, size, generator=g),
        "label": torch.randint(0, 2, (batch_size,), generator=g),
        "index": torch.arange(batch_size),
        "view": torch.zeros(batch_size, dtype=torch.int64),
        "video": [f"v{i}" for i in range(batch_size)],
    }


def plain_step(teacher, student, optimizer, batch: dict) -> None:
    """The lower bound, without kdbench: fp32 no-grad teacher forward, student CE step."""
    with torch.no_grad():
        teacher(batch["image"])
    loss = F.cross_entropy(student(batch["image"]).logits, batch["label"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def method_setup(name: str, teacher, batch: dict, cached: bool = False) -> Setup:
    """A harness ``Setup`` for method ``name`` on ``batch``, its teacher live or cached."""
    torch.manual_seed(0)
    student = place(build_model(STUDENT, 2), CPU)
    if METHODS.get(name).needs_preact:  # a copy: the hooks would slow the others' teacher
        teacher = copy.deepcopy(teacher)
        request_preact(name, student, teacher)
    with torch.no_grad():
        s_out, t_out = student.eval()(batch["image"][:2]), teacher(batch["image"][:2])
    ctx = network_context(student, teacher, s_out, t_out, 2, BenchSet(1024))
    method = build_method(name, ctx, {})
    params = list(student.train().parameters()) + list(method.parameters())
    optimizer = make_optimizer(params, RunConfig())  # the harness's optimizer
    outputs = teacher_outputs(teacher, method, batch, cached) if method.needs_teacher else None
    dtype = compute_dtype("auto", CPU)
    return Setup({}, student, teacher, outputs, method, optimizer, CPU, {}, dtype)


class BenchSet:
    """What a method's context reads of a training split: its size and labels."""

    def __init__(self, size: int) -> None:
        self.labels = torch.arange(size) % 2

    def __len__(self) -> int:
        return len(self.labels)


def teacher_outputs(teacher, method, batch: dict, cached: bool) -> LiveTeacher | CachedTeacher:
    live = LiveTeacher(teacher, method.teacher_features(), CPU, compute_dtype("auto", CPU))
    if not cached:
        return live
    table = {k: v.clone() for k, v in live.raw(batch["image"]).items()}
    return CachedTeacher(table, views=1, device=CPU)


def bench_methods(names: list[str], steps: int = 10, batch_size: int = 64, size: int = 64):
    """Step times of each method (teacher live and cached) and their ratios."""
    batch = synthetic_batch(batch_size, size)
    teacher = paper_teacher(size)
    teacher.requires_grad_(False)
    student = build_model(STUDENT, 2).train()
    steps_batch = to_device(batch, CPU)  # as the harness feeds it: channels_last
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def bound() -> None:
        plain_step(teacher, student, optimizer, batch)

    vanilla = partial(train_step, method_setup("vanilla", teacher, batch), steps_batch)
    rows = []
    for name in names:
        live, cached = (method_setup(name, teacher, batch, c) for c in (False, True))
        steps_of = [partial(train_step, s, steps_batch) for s in (live, cached)]
        live_ms, cached_ms, bound_ms, vanilla_ms = interleaved_ms(
            [*steps_of, bound, vanilla], steps
        )
        rows.append(BenchRow(name, live_ms, live_ms / bound_ms, cached_ms, cached_ms / vanilla_ms))
    return rows


@contextmanager
def cache_at(path: Path) -> Iterator[None]:
    """``$KDBENCH_CACHE`` set to ``path`` inside the block, restored after it."""
    before = os.environ.get("KDBENCH_CACHE")
    os.environ["KDBENCH_CACHE"] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ["KDBENCH_CACHE"]
        else:
            os.environ["KDBENCH_CACHE"] = before


def suite_wall_time(preset: str) -> SuiteRow:
    """Run sweep ``preset`` here, one run after another, in a temporary results folder with an
    empty cache (``$KDBENCH_CACHE`` points there meanwhile), and time it."""
    from kdbench.sweep.plan import expand
    from kdbench.sweep.runner import run_in_process
    from kdbench.sweep.spec import load_spec

    plan = expand(load_spec(preset=preset))
    tmp = tempfile.TemporaryDirectory(prefix=f"kdbench-suite-{preset}-")
    with tmp, cache_at(Path(tmp.name) / "cache"):
        started = time.perf_counter()
        records = run_in_process(plan.runs(), Path(tmp.name) / "results", log=lambda line: None)
        wall = time.perf_counter() - started
    teachers = {cfg.run_id() for cfg in plan.teachers}
    times = {r["run_id"]: r.get("wall_time_s", 0.0) for r in records}
    students = [t for run_id, t in times.items() if run_id not in teachers]
    return SuiteRow(
        preset=preset,
        runs=len(records),
        failed=sum(r.get("status") != "done" for r in records),
        wall_s=wall,
        teacher_s=sum(t for run_id, t in times.items() if run_id in teachers),
        student_s=sum(students),
        student_median_s=statistics.median(students) if students else 0.0,
    )


def suite_table(rows: list[SuiteRow], cores: int | None) -> Table:
    table = Table(
        title=f"whole sweeps from an empty cache, one run after another, {cores} CPU cores",
        caption="teachers / students: summed wall time of their runs",
    )
    columns = ("preset", "runs", "failed", "wall", "teachers s", "students s", "median student s")
    for col in columns:
        table.add_column(col, justify="left" if col == "preset" else "right")
    for r in rows:
        minutes, seconds = divmod(round(r.wall_s), 60)
        table.add_row(
            r.preset,
            str(r.runs),
            str(r.failed),
            f"{minutes} min {seconds:02d} s",
            f"{r.teacher_s:.0f}",
            f"{r.student_s:.0f}",
            f"{r.student_median_s:.1f}",
        )
    return table


def precision_verdict(model: str, kwargs: dict, size: int, batch_size: int, training: bool) -> dict:
    """What ``precision: auto`` decides for ``model`` here, measured now (stored verdicts are
    neither read nor written): both step times, the choice and its reason."""
    net = place(build_model(model, 2, **kwargs), CPU)
    if not training:
        net.eval().requires_grad_(False)
    times = time_dtypes(net, [batch_size, 3, size, size], CPU, training)
    verdict = verdict_from(times[torch.float32], times[torch.bfloat16])
    if not native_bf16(CPU):
        verdict |= {"choice": "fp32", "reason": "bf16 is not native on this cpu"}
    return verdict


def verdict_line(model: str, size: int, batch_size: int, training: bool, verdict: dict) -> str:
    mode = "training" if training else "inference"
    return (
        f"{model} {mode}, batch {batch_size} at {size}x{size}, {device_name(CPU)}, "
        f"{torch.get_num_threads()} threads: fp32 {verdict['fp32_ms']:.1f} ms, "
        f"bf16 {verdict['bf16_ms']:.1f} ms -> {verdict['choice']} ({verdict['reason']})"
    )


def precision_gap(size: int = 64, batch_size: int = 64) -> float:
    """Max |logit difference| of the bf16-autocast teacher vs fp32 on one random batch."""
    teacher = paper_teacher(size)
    batch = synthetic_batch(batch_size, size)
    outs = [LiveTeacher(teacher, [], CPU, d)(batch).logits for d in (torch.float32, torch.bfloat16)]
    return float((outs[0] - outs[1]).abs().max())


def bench_table(rows: list[BenchRow], cores: int | None) -> Table:
    precision = dtype_name(compute_dtype("auto", CPU))
    table = Table(
        title=f"ms per training step: {STUDENT} <- {TEACHER[0]} (resnet18 x2), {cores} CPU cores",
        caption=(
            f"teacher forward and student step in {precision} (bf16 where native) + channels_last; "
            "live: the teacher runs; cached: stored teacher outputs; bound: plain-PyTorch fp32 "
            "no-grad teacher forward + student CE step, same batch, timed in turn with each row"
        ),
    )
    columns = ("method", "live ms", "live x bound", "cached ms", "cached x vanilla")
    for col in columns:
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(
            r.method,
            f"{r.live_ms:.1f}",
            f"{r.vs_bound:.2f}",
            f"{r.cached_ms:.1f}",
            f"{r.cached_vs_vanilla:.2f}",
        )
    return table
