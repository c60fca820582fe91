"""A run's checkpoints: files it must be able to trust (checksummed, written atomically, set
aside, never deleted, when damaged), and what a checkpoint holds to resume a run.

A checkpoint ``X.pt`` is written to a temp file unique to this process, fsynced and renamed
into place; its sha256 goes to ``X.pt.sha256`` next to it. A reader that finds the digest
does not match (a truncated, garbage or bit-flipped file) renames the file to
``X.pt.damaged-<UTC time>`` and treats it as absent. A run keeps ``last.pt`` (and the one
before it, ``prev.pt``) while it trains, and its final weights as ``model.pt``.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kdbench import results

if TYPE_CHECKING:
    from torch import nn

    from kdbench.train.setup import Setup


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


def save_checkpoint(folder: Path, setup: Setup, state: dict) -> None:
    """Everything needed to continue after ``state['epoch']`` epochs, as ``last.pt`` (written
    atomically, checksummed); the one before it is kept as ``prev.pt``."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = {
        "model": setup.student.state_dict(),
        "method": setup.method.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "rng": torch.get_rng_state(),
    } | {key: state[key] for key in RESUMED}
    if setup.average:
        blob["average"] = setup.average.state_dict()
    last = folder / "last.pt"
    if last.exists():
        rename(last, folder / "prev.pt")
    save(blob, last)


RESUMED = ("epoch", "history", "wall_time_s", "attempts")  # what a checkpoint carries on
CHECKPOINTS = ("last.pt", "prev.pt")  # newest first


def resume(folder: Path, setup: Setup, log) -> dict:
    """Load the newest intact checkpoint into ``setup``; the state to continue from.

    A damaged checkpoint is set aside and the one before it tried, then a fresh start; each
    fault is listed in the state's ``checkpoint_faults`` (and so in the run's record).
    """
    faults = []
    for name in CHECKPOINTS:
        path = folder / name
        if not path.exists():
            continue
        try:
            blob = load(path, map_location=setup.device)
            restore(setup, blob)
        except DamagedFileError as err:
            faults.append(str(err))
            log(f"{err}; trying the checkpoint before it")
            continue
        log(f"resuming after epoch {blob['epoch']} from {path}")
        state = {key: blob.get(key, 0) for key in RESUMED}
        state["attempts"] = state["attempts"] + 1
        return state | {"resumed_from_epoch": blob["epoch"], "checkpoint_faults": faults}
    fresh = {"epoch": 0, "history": [], "wall_time_s": 0.0, "attempts": 1}
    return fresh | {"resumed_from_epoch": 0, "checkpoint_faults": faults}


def restore(setup: Setup, blob: dict) -> None:
    setup.student.load_state_dict(blob["model"])
    setup.method.load_state_dict(blob["method"])
    setup.optimizer.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["rng"].cpu())
    if setup.average:
        setup.average.load_state_dict(blob["average"])


def discard_checkpoints(folder: Path) -> None:
    """Remove the epoch checkpoints (``train.keep_last: false``, or ``--rerun``)."""
    for name in CHECKPOINTS:
        remove(folder / name)


def save_weights(folder: Path, model: nn.Module) -> None:
    """The finished run's weights, ``model.pt`` (what a teacher run hands its students)."""
    folder.mkdir(parents=True, exist_ok=True)
    save(model.state_dict(), folder / "model.pt")
