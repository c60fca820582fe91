"""Precision names resolve per device; auto is measured once and stored; autocast computes
convolutions in bf16, losses in fp32."""

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import kdbench.train.precision as precision
from kdbench.cli import main
from kdbench.config import ConfigError, ModelConfig
from kdbench.methods.vanilla import Vanilla
from kdbench.models import build_model
from kdbench.paths import cache_root
from kdbench.train import run
from kdbench.train.precision import autocast, choose_dtype, compute_dtype, native_bf16, time_dtypes
from kdbench.train.setup import Setup
from kdbench.train.step import train_step

CPU = torch.device("cpu")
SHAPE = (4, 3, 16, 16)


@pytest.fixture
def timings(monkeypatch, tmp_path):
    """bf16 native here, a verdict store of this test's own, and step times set by the test
    (``timings["fp32"]``, ``timings["bf16"]``) instead of measured; ``timings["calls"]``."""
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    fake = {"fp32": 100.0, "bf16": 50.0, "calls": 0}

    def time_dtypes(model, shape, device, training):
        fake["calls"] += 1
        return {torch.float32: fake["fp32"], torch.bfloat16: fake["bf16"]}

    monkeypatch.setattr(precision, "time_dtypes", time_dtypes)
    return fake


def auto(model_name: str = "resnet10t", training: bool = True):
    spec = ModelConfig(model_name, {"drop_rate": 0.0})
    return choose_dtype("auto", "train.precision", None, spec, SHAPE, CPU, training)


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


@pytest.mark.parametrize(
    ("fp32_ms", "bf16_ms", "dtype"),
    [(100.0, 50.0, torch.bfloat16), (50.0, 100.0, torch.float32), (100.0, 97.0, torch.float32)],
)
def test_auto_picks_the_dtype_measured_faster_and_fp32_on_near_ties(
    timings, fp32_ms, bf16_ms, dtype
):
    timings |= {"fp32": fp32_ms, "bf16": bf16_ms}
    chosen, verdict = auto()
    assert chosen == dtype and timings["calls"] == 1
    assert verdict | {"reason": None} == {
        "choice": "bf16" if dtype == torch.bfloat16 else "fp32",
        "fp32_ms": fp32_ms,
        "bf16_ms": bf16_ms,
        "cached": False,
        "reason": None,
    }
    assert "measured" in verdict["reason"]


def test_a_stored_verdict_is_reused_without_timing_again(timings):
    first = auto()[1]
    timings |= {"fp32": 1.0, "bf16": 1000.0}  # would flip the choice if measured again
    dtype, again = auto()
    assert timings["calls"] == 1 and dtype == torch.bfloat16
    assert again == first | {"cached": True}
    auto(training=False)  # the teacher's side is another verdict
    auto("resnet18")  # and so is another model
    assert timings["calls"] == 3
    assert len(list((cache_root() / "precision").glob("*.json"))) == 3


def test_a_damaged_verdict_file_is_measured_again(timings):
    auto()
    (path,) = (cache_root() / "precision").glob("*.json")
    path.write_text('{"key": {"model": "resnet10t"}, "verd')
    verdict = auto()[1]
    assert timings["calls"] == 2 and verdict["cached"] is False
    assert json.loads(path.read_text())["verdict"]["choice"] == "bf16"
    path.write_text(json.dumps({"key": {}, "verdict": verdict}))  # another key's verdict
    auto()
    assert timings["calls"] == 3


@pytest.mark.parametrize(("name", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_a_forced_precision_is_not_timed(timings, name, dtype):
    spec = ModelConfig("resnet10t")
    assert choose_dtype(name, "train.precision", None, spec, SHAPE, CPU, True) == (dtype, None)
    assert timings["calls"] == 0


def test_auto_without_native_bf16_is_fp32_untimed(timings, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    dtype, verdict = auto()
    assert dtype == torch.float32 and timings["calls"] == 0
    assert verdict == {
        "choice": "fp32",
        "fp32_ms": None,
        "bf16_ms": None,
        "cached": False,
        "reason": "bf16 is not native on this cpu",
    }


@pytest.mark.parametrize("training", [True, False])
def test_timing_leaves_the_model_and_the_random_stream_as_they_were(training):
    model = build_model("resnet10t", 2).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    times = time_dtypes(model, list(SHAPE), CPU, training)
    assert all(ms > 0 for ms in times.values()) and set(times) == {torch.float32, torch.bfloat16}
    assert torch.equal(torch.rand(3), expected)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_a_run_records_the_verdicts_of_student_and_teacher(timings, tiny, tmp_path):
    kwargs = {"spatial": "resnet10t", "frequency": "resnet10t", "image_size": 32}
    torch.save(build_model("dual-branch", 2, **kwargs).state_dict(), tmp_path / "teacher.pt")
    cfg = tiny("method.name=kd", f"teacher.checkpoint={tmp_path / 'teacher.pt'}")
    record = run(cfg, tmp_path)
    assert record["precision"] == "bfloat16"
    assert record["precision_verdict"]["bf16_ms"] == 50.0
    assert record["teacher"]["precision_verdict"]["choice"] == "bf16"


def test_bench_precision_prints_the_verdict_a_run_would_get(capsys):
    args = ["bench", "--precision", "resnet10t", "drop_rate=0.0", "--size", "16"]
    assert main([*args, "--batch-size", "2", "--inference"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("resnet10t inference, batch 2 at 16x16, cpu ")
    assert " ms -> fp32 (" in line or " ms -> bf16 (" in line
