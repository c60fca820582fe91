"""pytest-benchmark: one training step per method and the plain-PyTorch bound (``make bench``).

Compare the rows of one run: ``pytest tests/benchmarks --benchmark-only``. ``kdbench bench``
prints the same steps as ratios measured in turn in one process. ``live``: the teacher runs
(bf16 where the CPU has it); ``cached``: its outputs come from the teacher-output cache.
"""

import pytest
import torch

from kdbench.models import build_model
from kdbench.registry import METHODS
from kdbench.train.speed import STUDENT, method_setup, paper_teacher, plain_step, synthetic_batch
from kdbench.train.step import train_step

SIZE, BATCH = 64, 64


@pytest.fixture(scope="module")
def teacher():
    return paper_teacher(SIZE).requires_grad_(False)


@pytest.fixture(scope="module")
def batch():
    return synthetic_batch(BATCH, SIZE)


def test_plain_pytorch_bound(benchmark, teacher, batch):
    torch.manual_seed(0)
    student = build_model(STUDENT, 2).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    benchmark(plain_step, teacher, student, optimizer, batch)


@pytest.mark.parametrize("cached", [False, True], ids=["live", "cached"])
@pytest.mark.parametrize("name", METHODS.names())
def test_method_step(benchmark, name, cached, teacher, batch):
    setup = method_setup(name, teacher, batch, cached)
    losses = benchmark(train_step, setup, batch)
    assert all(torch.isfinite(v) for v in losses.values())
