"""Precision names resolve per device; autocast computes convolutions in bf16, losses in fp32."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from kdbench.config import ConfigError
from kdbench.harness import Setup, train_step
from kdbench.methods.vanilla import Vanilla
from kdbench.models import build_model
from kdbench.precision import autocast, compute_dtype, native_bf16

CPU = torch.device("cpu")


def test_names_resolve_and_auto_follows_the_cpu():
    assert compute_dtype("fp32", CPU) == torch.float32
    assert compute_dtype("bf16", CPU) == torch.bfloat16
    assert compute_dtype("auto", CPU) == (torch.bfloat16 if native_bf16(CPU) else torch.float32)
    with pytest.raises(ConfigError, match=r"train\.precision.*did you mean 'fp32'"):
        compute_dtype("fp23", CPU, "train.precision")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_autocast_runs_convolutions_in_the_dtype(dtype):
    conv = torch.nn.Conv2d(3, 4, 3)
    with autocast(CPU, dtype):
        assert conv(torch.randn(1, 3, 8, 8)).dtype == dtype


def test_a_bf16_step_keeps_fp32_losses_close_to_fp32():
    torch.manual_seed(0)
    batch = {"image": torch.randn(8, 3, 32, 32), "label": torch.arange(8) % 2}
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(1)
        student = build_model("resnet10t", 2)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.0)
        setup = Setup(
            {},
            student,
            None,
            None,
            Vanilla(SimpleNamespace(num_classes=2)),
            optimizer,
            CPU,
            {},
            dtype,
        )
        losses[dtype] = train_step(setup, batch)["ce"]
        assert losses[dtype].dtype == torch.float32
    with torch.no_grad():
        reference = F.cross_entropy(reference_logits(batch), batch["label"])
    assert abs(float(losses[torch.float32]) - float(reference)) < 1e-6
    assert abs(float(losses[torch.bfloat16]) - float(reference)) < 0.05
    assert float(losses[torch.bfloat16]) != float(losses[torch.float32])  # bf16 did run


def reference_logits(batch: dict) -> torch.Tensor:
    torch.manual_seed(1)
    return build_model("resnet10t", 2).train()(batch["image"]).logits
