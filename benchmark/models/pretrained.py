"""Pretrained weights offline (``student.pretrained`` / ``teacher.pretrained``): a local
``.safetensors`` / ``.pth`` file or a Hugging Face cache folder, loaded through timm's own
mechanism (``pretrained_cfg_overlay=dict(file=…)``: safetensors, or ``torch.load`` with
``weights_only=True``), so nothing is downloaded and nothing in the file runs as code."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import timm
import torch

from kdbench.errors import ConfigError

# what a Hugging Face snapshot of a timm model holds, in the order timm prefers them
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def weights_file(path: str | Path, owner: str = "pretrained") -> Path:
    """The weights file ``path`` names: itself, or the newest snapshot's in a cache folder."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise ConfigError(f"{owner}: {path} is not a weights file ({', '.join(SUFFIXES)})")
        return path
    if path.is_dir():
        found = [p for name in WEIGHT_FILES for p in path.rglob(name)]
        if found:
            return max(found, key=lambda p: p.stat().st_mtime)
        raise ConfigError(f"{owner}: no {' or '.join(WEIGHT_FILES)} under {path}")
    raise ConfigError(
        f"{owner}: no such file or folder {path} (a .safetensors/.pth file or a Hugging Face "
        "cache folder, e.g. ~/.cache/huggingface/hub/models--timm--resnet18.a1_in1k)"
    )


def timm_kwargs(name: str, path: str | Path, num_classes: int) -> dict:
    """``timm.create_model`` arguments that load ``path`` instead of downloading. timm keeps
    the file's classifier only if its class count is the one the config declares: ours, where
    the file's classifier has our number of classes (else timm drops it, as for ImageNet
    weights in a 2-class student)."""
    file = weights_file(path)
    overlay: dict = {"file": str(file)}
    key = f"{timm.models.get_pretrained_cfg(name).classifier}.weight"
    if classifier_rows(file, key) == num_classes:
        overlay["num_classes"] = num_classes
    return {"pretrained": True, "pretrained_cfg_overlay": overlay}


def classifier_rows(file: Path, key: str) -> int | None:
    """The number of classes of the classifier weight ``key`` in ``file``, read lazily."""
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), "pt") as f:
            names = list(f.keys())  # a safe_open handle has no __contains__
            return f.get_slice(key).get_shape()[0] if key in names else None
    state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    state = state.get("state_dict", state.get("model", state))
    return state[key].shape[0] if key in state else None


def weights_digest(path: str | Path) -> str:
    """sha256 (16 hex) of the weights file, part of the run id (cached per file version)."""
    file = weights_file(path)
    stat = file.stat()
    return file_digest(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@cache
def file_digest(path: str, _size: int, _mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]
