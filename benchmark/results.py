"""Run results on disk: one JSON per run, written atomically, plus per-run checkpoint folders."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("kdbench", "torch", "torchvision", "timm", "fvcore", "scikit-learn", "numpy")


def cache_root() -> Path:
    """Where kdbench keeps what it can recompute: ``$KDBENCH_CACHE``, else ``~/.cache/kdbench``."""
    return Path(os.environ.get("KDBENCH_CACHE") or Path.home() / ".cache" / "kdbench")


def run_path(results: Path, run_id: str) -> Path:
    return Path(results) / "runs" / f"{run_id}.json"


def checkpoint_dir(results: Path, run_id: str) -> Path:
    return Path(results) / "checkpoints" / run_id


def write_json(path: Path, record: dict) -> None:
    """Write ``record`` atomically: a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_result(results: Path, run_id: str) -> dict | None:
    path = run_path(results, run_id)
    return json.loads(path.read_text()) if path.exists() else None


def load_results(results: Path) -> list[dict]:
    """Every run JSON under ``results/runs``, sorted by run id."""
    folder = Path(results) / "runs"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


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
