"""Step-time benchmark: every method's training step against the plain-PyTorch lower bound.

The bound is what any distillation step must at least do: a no-grad teacher forward, a student
forward and backward (cross-entropy) and an optimizer step, written in plain PyTorch.
All timings come from one process on one synthetic batch, so ratios are comparable.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from rich.table import Table

from kdbench.harness import Setup, train_step
from kdbench.method import Context, build_method
from kdbench.models import build_model
from kdbench.registry import METHODS

TEACHER = ("dual-branch", {"spatial": "resnet18", "frequency": "resnet18"})
STUDENT = "resnet10t"  # the paper preset's student


@dataclass
class BenchRow:
    method: str
    ms: float  # median ms per training step
    vs_bound: float  # ratio to the plain-PyTorch step (teacher forward + student step)
    vs_vanilla: float  # ratio to the vanilla student's step (no teacher at all)


def paired_ms(
    step: Callable[[], object], reference: Callable[[], object], steps: int, warmup: int = 2
) -> tuple[float, float]:
    """Median ms of ``step`` and of ``reference``, timed alternately so drift hits both."""
    for _ in range(warmup):
        step()
        reference()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(steps):
        for fn, out in ((step, times[0]), (reference, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[0]), 1000 * statistics.median(times[1])


def synthetic_batch(batch_size: int, size: int, num_samples: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(batch_size, 3, size, size, generator=g),
        "label": torch.randint(0, 2, (batch_size,), generator=g),
        "index": torch.randperm(num_samples, generator=g)[:batch_size],
        "video": [f"v{i}" for i in range(batch_size)],
    }


def plain_step(teacher, student, optimizer, batch: dict) -> None:
    """The lower bound, without kdbench: teacher forward, student CE step."""
    with torch.no_grad():
        teacher(batch["image"])
    loss = F.cross_entropy(student(batch["image"]).logits, batch["label"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def method_setup(name: str, teacher, batch: dict, num_samples: int) -> Setup:
    torch.manual_seed(0)
    student = build_model(STUDENT, 2)
    with torch.no_grad():
        ctx = Context(
            student.eval()(batch["image"][:2]), teacher(batch["image"][:2]), 2, num_samples
        )
    method = build_method(name, ctx, {})
    uses_teacher = METHODS.get(name).needs_teacher
    params = list(student.train().parameters()) + list(method.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    device = torch.device("cpu")
    return Setup({}, student, teacher if uses_teacher else None, method, optimizer, device)


def bench_methods(
    names: list[str], steps: int = 10, batch_size: int = 64, size: int = 64
) -> list[BenchRow]:
    """Median step time of each method, and its ratios to the bound and to vanilla."""
    num_samples = 1024
    batch = synthetic_batch(batch_size, size, num_samples)
    teacher = build_model(TEACHER[0], 2, image_size=size, **TEACHER[1]).eval()
    teacher.requires_grad_(False)
    student = build_model(STUDENT, 2).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def bound() -> None:
        plain_step(teacher, student, optimizer, batch)

    timed, ratio = {}, {}
    for name in dict.fromkeys(["vanilla", *names]):
        setup = method_setup(name, teacher, batch, num_samples)
        timed[name], bound_ms = paired_ms(lambda s=setup: train_step(s, batch), bound, steps)
        ratio[name] = timed[name] / bound_ms
    return [BenchRow(n, timed[n], ratio[n], ratio[n] / ratio["vanilla"]) for n in names]


def bench_table(rows: list[BenchRow], cores: int | None) -> Table:
    table = Table(
        title=f"ms per training step: {STUDENT} <- {TEACHER[0]} (resnet18 x2), {cores} CPU cores",
        caption="bound: plain PyTorch no-grad teacher forward + student CE step, same batch",
    )
    for col in ("method", "ms/step", "x bound", "x vanilla"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(r.method, f"{r.ms:.1f}", f"{r.vs_bound:.2f}", f"{r.vs_vanilla:.2f}")
    return table
