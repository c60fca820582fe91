"""Run results on disk: one JSON per run, written atomically, plus per-run checkpoint folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from kdbench.errors import ConfigError

PACKAGES = ("kdbench", "torch", "torchvision", "timm", "fvcore", "scikit-learn", "numpy")


def run_path(results: Path, run_id: str) -> Path:
    return Path(results) / "runs" / f"{run_id}.json"


def checkpoint_dir(results: Path, run_id: str) -> Path:
    return Path(results) / "checkpoints" / run_id


def write_json(path: Path, record: dict) -> None:
    """Write ``record`` atomically (see ``write_atomic``), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2, sort_keys=True, allow_nan=True).encode())


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` through a temp file unique to this process, fsynced and renamed
    into place: a reader sees the old file or the new one, never half. A failed write (a full
    or read-only disk) leaves no temp file, and its ``OSError`` names ``path``.

    One permission policy for everything kdbench writes (run JSONs, checkpoints, caches,
    manifests): that of a file ``open`` creates, ``0o666`` less the umask (mkstemp alone would
    make it owner-only)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class DamagedResult(ValueError):
    """A run JSON that cannot be used; the message names the file and what is wrong."""


WARNED: set[tuple[Path, int]] = set()  # damaged files (path, mtime) this process reported


def read_result(results: Path, run_id: str) -> dict | None:
    """The run's record; None when it has none, or when its file is damaged (then a warning
    line names the file, once per file: again only if the file is written anew)."""
    path = run_path(results, run_id)
    return read_or_warn(path) if path.exists() else None


def load_results(results: Path) -> list[dict]:
    """Every readable run JSON under ``results/runs``, sorted by run id (damaged ones warned)."""
    folder = Path(results) / "runs"
    records = (read_or_warn(p) for p in sorted(folder.glob("*.json")))
    return [record for record in records if record is not None]


def read_or_warn(path: Path) -> dict | None:
    try:
        return check_result(path)
    except DamagedResult as err:
        warn_once(path, f"{err}; treated as missing")
        return None


def check_result(path: Path) -> dict:
    """The run record in ``path``; raises DamagedResult if it is not one."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedResult(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(record, dict) or not {"run_id", "status"} <= record.keys():
        raise DamagedResult(f"{path}: not a kdbench run result (no run_id and status)")
    return record


def warn_once(path: Path, message: str) -> None:
    """Print ``message`` unless this version of ``path`` was warned about already."""
    try:
        key = Path(path).resolve(), Path(path).stat().st_mtime_ns
    except OSError:  # gone meanwhile: say so anyway
        key = Path(path).resolve(), -1
    if key not in WARNED:
        WARNED.add(key)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def set_aside(path: Path) -> Path:
    """Rename a damaged file or folder to ``<name>.damaged-<UTC time>`` (kept, never deleted),
    so that a fresh one can be written; returns the new path."""
    path = Path(path)
    target = path.with_name(f"{path.name}.damaged-{aside_stamp()}")
    os.rename(path, target)
    return target


def aside_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def check_writable(folder: Path) -> None:
    """Fail now, in one line, if run results cannot be written under ``folder``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"results folder {folder} is a file: give a folder for runs/")
    try:
        (folder / "runs").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder / "runs"):
            pass
    except OSError as err:
        raise ConfigError(f"results folder {folder} is not writable ({err.strerror})") from None


def package_versions() -> dict[str, str]:
    return {name: package_version(name) for name in PACKAGES}


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def git_sha() -> str | None:
    """The commit of the kdbench checkout, if it is one (None for an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=here, timeout=5).returncode
    return out.stdout.strip() + ("-dirty" if dirty else "")
