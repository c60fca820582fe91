"""Which dtype a model computes in: fp32, or bf16 autocast where that is measured faster.

``precision`` (``teacher.precision``, ``train.precision``) is ``auto``, ``fp32`` or ``bf16``.
``auto`` is fp32 where bf16 is not native (only CUDA GPUs of compute capability >= 8.0 and CPUs
with AVX512-BF16 or AMX-BF16 have it); where it is, a few fp32 and bf16 steps of the run's own
model, batch and input shape are timed once (training steps for the student, inference for the
teacher) and bf16 is picked only if it is faster by more than ``MARGIN``: native bf16 is not
faster for every model and input size. The verdict is stored under
``<cache>/precision/`` and reused. Weights, optimizer state and losses stay in fp32 (autocast),
so bf16 needs no loss scaling.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.config import ConfigError, ModelConfig
from kdbench.paths import cache_root
from kdbench.registry import unknown_message
from kdbench.results import write_json

PRECISIONS = ("auto", "fp32", "bf16")
MARGIN = 0.05  # bf16 must beat fp32 by more than this fraction to be picked
# Timed steps per dtype after warm-up ones; the fastest counts: on shared cores a step is
# either undisturbed or several times slower (other processes), and a median of a few is
# then a coin toss between the two.
WARMUP, STEPS = 2, 7
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (CUDA compute >= 8.0, or a CPU with
    AVX512-BF16 / AMX-BF16); elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return False
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def check_precision(precision: str, key: str = "precision") -> None:
    if precision not in PRECISIONS:
        raise ConfigError(unknown_message(key, precision, PRECISIONS))


def compute_dtype(precision: str, device: torch.device, key: str = "precision") -> torch.dtype:
    """The dtype by the device alone: ``auto`` is bf16 where native, else fp32. Runs resolve
    ``auto`` by measurement instead: ``choose_dtype``."""
    check_precision(precision, key)
    if precision == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """bf16 autocast on ``device``, or nothing for fp32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def choose_dtype(
    precision: str,
    key: str,
    model: nn.Module,
    spec: ModelConfig,
    shape: tuple[int, ...],
    device: torch.device,
    training: bool,
) -> tuple[torch.dtype, dict | None]:
    """The dtype ``model`` computes in, and for ``auto`` the verdict behind it (``choice``,
    ``fp32_ms``, ``bf16_ms``, ``cached``, ``reason``); ``None`` for a forced precision.
    ``shape`` is a batch's (batch size, channels, height, width)."""
    check_precision(precision, key)
    if precision != "auto":
        return compute_dtype(precision, device, key), None
    if not native_bf16(device):
        reason = f"bf16 is not native on this {device.type}"
        return torch.float32, verdict_record("fp32", None, None, False, reason)
    verdict = measured_verdict(model, verdict_key(spec, shape, device, training), device)
    return DTYPES[verdict["choice"]], verdict


def batch_shape(dataset, batch_size: int) -> tuple[int, ...]:
    """The shape of a full training batch of ``dataset`` (a small dataset is one batch)."""
    return (min(batch_size, len(dataset)), *dataset[0]["image"].shape)


def verdict_record(
    choice: str, fp32_ms: float | None, bf16_ms: float | None, cached: bool, reason: str
) -> dict:
    return {
        "choice": choice,
        "fp32_ms": fp32_ms,
        "bf16_ms": bf16_ms,
        "cached": cached,
        "reason": reason,
    }


def verdict_key(
    spec: ModelConfig, shape: tuple[int, ...], device: torch.device, training: bool
) -> dict:
    """What a timing depends on: model, batch, mode, hardware, torch and its threads."""
    return {
        "model": spec.name,
        "kwargs": spec.kwargs,
        "shape": list(shape),
        "mode": "training" if training else "inference",
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return f"{device.type} {cpu_model()}"


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.partition(":")[2].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def verdict_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return cache_root() / "precision" / f"{digest[:20]}.json"


def measured_verdict(model: nn.Module, key: dict, device: torch.device) -> dict:
    """The stored verdict for ``key``, else one measured now and stored."""
    path = verdict_path(key)
    stored = read_verdict(path, key)
    if stored:
        return stored | {"cached": True}
    times = time_dtypes(model, key["shape"], device, key["mode"] == "training")
    verdict = verdict_from(times[torch.float32], times[torch.bfloat16])
    write_json(path, {"key": key, "verdict": verdict})
    return verdict


def read_verdict(path: Path, key: dict) -> dict | None:
    """The verdict stored at ``path`` for ``key``; ``None`` if absent, damaged or another's."""
    try:
        stored = json.loads(path.read_text())
        verdict = stored["verdict"]
        valid = stored["key"] == json.loads(json.dumps(key, default=str))
        valid = valid and verdict["choice"] in DTYPES
        return verdict_record(**verdict) if valid else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def verdict_from(fp32_ms: float, bf16_ms: float) -> dict:
    """bf16 if it is faster than fp32 by more than ``MARGIN``, else fp32."""
    if bf16_ms < fp32_ms * (1 - MARGIN):
        choice, reason = "bf16", f"bf16 measured {fp32_ms / bf16_ms:.2f}x faster than fp32"
    elif bf16_ms < fp32_ms:
        choice, reason = "fp32", f"bf16 measured within {MARGIN:.0%} of fp32"
    else:
        choice, reason = "fp32", f"bf16 measured {bf16_ms / fp32_ms:.2f}x slower than fp32"
    return verdict_record(choice, round(fp32_ms, 2), round(bf16_ms, 2), False, reason)


def time_dtypes(
    model: nn.Module, shape: list[int], device: torch.device, training: bool
) -> dict[torch.dtype, float]:
    """Fastest ms of a step of ``model`` in fp32 and in bf16, timed in turn. Training steps run
    on a copy (the run's weights and statistics stay as they are); the RNG state is restored."""
    images = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    images = images.to(device).contiguous(memory_format=torch.channels_last)
    with torch.random.fork_rng():
        model = copy.deepcopy(model).train() if training else model
        fns = [partial(timed_step, model, images, d, training) for d in DTYPES.values()]
        fp32_ms, bf16_ms = interleaved_ms(fns, STEPS, WARMUP, summary=min)
    return {torch.float32: fp32_ms, torch.bfloat16: bf16_ms}


def timed_step(model: nn.Module, images: torch.Tensor, dtype: torch.dtype, training: bool) -> None:
    """A training step's forward and backward as the harness runs it (autocast forward, fp32
    loss), or a forward as the live teacher runs it (inference mode)."""
    if training:
        with autocast(images.device, dtype):
            logits = model(images).logits.float()
        labels = torch.zeros(len(images), dtype=torch.int64, device=images.device)
        F.cross_entropy(logits, labels).backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.inference_mode(), autocast(images.device, dtype):
            model(images)
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)


def interleaved_ms(
    fns: list[Callable[[], object]],
    steps: int,
    warmup: int = 3,
    summary: Callable[[list[float]], float] = statistics.median,
) -> list[float]:
    """``summary`` (median) ms of each of ``fns``, timed in turn step after step so drift hits
    all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(steps):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [1000 * summary(t) for t in times]
