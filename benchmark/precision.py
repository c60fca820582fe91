"""Which dtype a model computes in: bf16 autocast where the device does bf16 natively.

``precision`` (``teacher.precision``, ``train.precision``) is ``auto``, ``fp32`` or ``bf16``.
``auto`` picks bf16 on CUDA GPUs of compute capability >= 8.0 and on CPUs with AVX512-BF16 or
AMX-BF16, and fp32 elsewhere, where bf16 is emulated and slower than fp32. Weights, optimizer
state and losses stay in fp32 (autocast), so bf16 needs no loss scaling.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from kdbench.config import ConfigError
from kdbench.registry import unknown_message

PRECISIONS = ("auto", "fp32", "bf16")


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
    """The dtype to compute in: ``auto`` is bf16 where native, else fp32."""
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
