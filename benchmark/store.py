"""Checkpoints a run writes and must be able to trust: checksummed, written atomically, and set
aside (never deleted) when damaged.

A checkpoint ``X.pt`` is written to a temp file unique to this process, fsynced and renamed
into place; its sha256 goes to ``X.pt.sha256`` next to it. A reader that finds the digest
does not match (a truncated, garbage or bit-flipped file) renames the file to
``X.pt.damaged-<UTC time>`` and treats it as absent.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from kdbench import results


class DamagedFileError(RuntimeError):
    """A file that must be read is damaged and was set aside; the message names it."""


def save(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically, with its checksum next to it.

    Nothing is left behind when the write fails (a full or read-only disk): the error names
    ``path``.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    results.write_atomic(path, data)
    results.write_atomic(digest_path(path), hashlib.sha256(data).hexdigest().encode())


def load(path: Path, **kwargs: Any) -> Any:
    """``torch.load(weights_only=True)`` of a checkpoint whose checksum matches.

    Raises ``DamagedFileError`` (after setting the file aside) when the checksum does not match
    or the file cannot be read, and ``FileNotFoundError`` when it does not exist.
    """
    path = Path(path)
    data = path.read_bytes()
    expected = read_digest(path)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise DamagedFileError(set_aside_message(path, "its checksum does not match"))
    try:
        return torch.load(io.BytesIO(data), weights_only=True, **kwargs)
    except Exception as err:  # truncated, garbage, empty: torch's message is not the point
        reason = f"it cannot be read ({type(err).__name__})"
        raise DamagedFileError(set_aside_message(path, reason)) from None


def verify(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted (and set it aside), or ``None``.

    A file written before checksums existed is trusted if it exists and is not empty.
    """
    path = Path(path)
    if not path.exists():
        return f"{path} is missing"
    expected = read_digest(path)
    if expected is None:
        return None if path.stat().st_size else set_aside_message(path, "it is empty")
    if file_sha256(path) != expected:
        return set_aside_message(path, "its checksum does not match")
    return None


def digest_path(path: Path) -> Path:
    return Path(f"{path}.sha256")


def read_digest(path: Path) -> str | None:
    try:
        return digest_path(path).read_text().strip()
    except FileNotFoundError:
        return None


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint (and its checksum) to ``<name>.damaged-<UTC time>``."""
    digest = digest_path(path)
    target = results.set_aside(path)
    if digest.exists():
        os.replace(digest, digest_path(target))
    return target


def set_aside_message(path: Path, reason: str) -> str:
    """Set ``path`` aside; the one line that says so (the caller logs it)."""
    target = set_aside(path)
    return f"damaged file {path}: {reason}; set aside as {target.name}"


def rename(source: Path, target: Path) -> None:
    """Move a checkpoint and its checksum to ``target`` (replacing what is there)."""
    os.replace(source, target)
    if digest_path(source).exists():
        os.replace(digest_path(source), digest_path(target))
    else:
        digest_path(target).unlink(missing_ok=True)


def remove(path: Path) -> None:
    """Delete a checkpoint and its checksum."""
    Path(path).unlink(missing_ok=True)
    digest_path(path).unlink(missing_ok=True)
