"""Where a run computes: its device, and models and batches moved onto it (channels_last)."""

from __future__ import annotations

import torch
from torch import nn

from kdbench.config import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}, but CUDA is not available here (use cpu or auto)")
    return device


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device``, channels_last (faster convolutions on CUDA and on CPU alike)."""
    return model.to(device).to(memory_format=torch.channels_last)


def to_device(batch: dict, device: torch.device) -> dict:
    moved = {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }
    if moved["image"].dim() == 4:
        moved["image"] = moved["image"].contiguous(memory_format=torch.channels_last)
    return moved
