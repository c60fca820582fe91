"""Faults of the teacher-output cache, done for real: a damaged file is detected, named, its
folder set aside and the outputs recomputed, so the run ends as a clean one does; a full disk
falls back to the live teacher without crashing or leaving temporary files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kdbench.config import RunConfig, build_config, load_preset
from kdbench.sweep.plan import Plan, resolve_teacher
from kdbench.sweep.runner import run_in_process
from kdbench.train import run
from kdbench.train.cache import CacheWarning

# conftest's ``tiny`` overrides (module fixtures cannot use it), with an fp32 teacher
TINY = [
    "data.params.videos=20",
    "train.epochs=1",
    "teacher.train.epochs=1",
    "teacher.precision=fp32",
    "train.precision=fp32",  # auto re-times under load and may flip: compared runs must match
]


def config(*overrides: str) -> RunConfig:
    return build_config(load_preset("smoke"), [*TINY, *overrides])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The session's cache folder (``private_cache``), where the SynthFF corpus is generated."""
    return tmp_path_factory.getbasetemp() / "cache"


@pytest.fixture(scope="module")
def weights(tmp_path_factory, corpus) -> str:
    """The checkpoint of a tiny teacher, trained once for this module."""
    plan = Plan()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDBENCH_CACHE", str(corpus))
        resolve_teacher(config("method.name=kd"), plan)
        results = tmp_path_factory.mktemp("teacher")
        (teacher,) = run_in_process(plan.runs(), results)
    return str(results / teacher["checkpoint"])


def own_cache(folder: Path, corpus: Path, mp: pytest.MonkeyPatch) -> Path:
    """``folder`` as ``$KDBENCH_CACHE``, sharing the corpus (a symlink); its teacher outputs."""
    folder.mkdir()
    (folder / "synthff").symlink_to(corpus / "synthff")
    mp.setenv("KDBENCH_CACHE", str(folder))
    return folder / "teacher-outputs"


@pytest.fixture(scope="module")
def clean(tmp_path_factory, corpus, weights) -> tuple[dict, Path]:
    """A kd run that built its teacher's cache: its record and the cache folder."""
    with pytest.MonkeyPatch.context() as mp:
        own_cache(tmp_path_factory.mktemp("clean") / "cache", corpus, mp)
        record = run(kd(weights), tmp_path_factory.mktemp("clean-results"))
    assert record["teacher"]["cache"] is True
    return record, Path(record["teacher"]["cache_dir"])


def kd(weights: str) -> RunConfig:
    return config("method.name=kd", f"teacher.checkpoint={weights}")


def flip_sign_bits(folder: Path) -> Path:
    """Negate every stored logit in place: same size, same header, wrong values."""
    path = folder / "logits.npy"
    size, clean = path.stat().st_size, np.load(path)
    with open(path, "r+b") as f:
        f.seek(size - clean.nbytes)
        flipped = np.frombuffer(f.read(), np.uint32) ^ 0x8000_0000
        f.seek(size - clean.nbytes)
        f.write(flipped.tobytes())
    assert path.stat().st_size == size and np.array_equal(np.load(path), -clean)
    return path


def truncate_npy(folder: Path) -> Path:
    path = folder / "logits.npy"
    os.truncate(path, path.stat().st_size // 2)
    return path


def truncate_json(folder: Path) -> Path:
    path = folder / "logits.json"
    os.truncate(path, path.stat().st_size // 2)
    return path


def garbage_header(folder: Path) -> Path:
    path = folder / "logits.npy"
    with open(path, "r+b") as f:
        f.write(b"\xff" * 16)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("damage", [flip_sign_bits, truncate_npy, truncate_json, garbage_header])
def test_a_damaged_cache_is_named_set_aside_and_rebuilt(
    damage: Callable[[Path], Path], clean, corpus, weights, tmp_path, monkeypatch
):
    want, built = clean
    outputs = own_cache(tmp_path / "cache", corpus, monkeypatch)
    folder = outputs / built.name
    shutil.copytree(built, folder)
    damaged = damage(folder)
    damaged_bytes = damaged.read_bytes()
    with pytest.warns(CacheWarning) as caught:
        got = run(kd(weights), tmp_path / "results")
    (line,) = [str(w.message) for w in caught if w.category is CacheWarning]
    assert str(damaged) in line and "set aside" in line and "\n" not in line
    (aside,) = outputs.glob(f"{folder.name}.damaged-*")
    assert str(aside) in line
    assert (aside / damaged.name).read_bytes() == damaged_bytes  # kept as found
    assert (folder / "logits.npy").read_bytes() == (built / "logits.npy").read_bytes()
    assert got["status"] == "done" and got["teacher"]["cache"] is True
    for a, b in zip(got["history"], want["history"], strict=True):
        assert a["train"] == b["train"] and a["test"] == b["test"]


CHILD = """
import json, sys
from kdbench.config import build_config, load_preset
from kdbench.train import run
record = run(build_config(load_preset("smoke"), sys.argv[2:]), sys.argv[1])
print(json.dumps({"status": record["status"], "teacher": record["teacher"]}))
"""


def fill(disk: Path, leave: int) -> None:
    """Take all but ``leave`` bytes of the file system ``disk`` is on."""
    stat = os.statvfs(disk)
    (disk / "filler").write_bytes(bytes(stat.f_bavail * stat.f_frsize - leave))


def temp_files(folder: Path) -> list[str]:
    return [name for _, _, names in os.walk(folder) for name in names if name.endswith(".tmp")]


@pytest.mark.slow
def test_a_full_disk_falls_back_to_the_live_teacher_without_crashing(corpus, weights, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (disk / "synthff").symlink_to(corpus / "synthff")
        fill(disk, leave=16 * 1024)  # the key and the logits fit, a feature map does not
        args = [str(tmp_path / "results"), *TINY, "method.name=two-in-one"]
        child = subprocess.run(
            [sys.executable, "-c", CHILD, *args, f"teacher.checkpoint={weights}"],
            env=os.environ | {"KDBENCH_CACHE": str(disk)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        left = temp_files(disk)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert child.returncode == 0, child.stderr[-3000:]  # a Bus error is -7
    record = json.loads(child.stdout.splitlines()[-1])
    assert record["status"] == "done" and record["teacher"]["cache"] is False
    reason = record["teacher"]["cache_reason"]
    assert f"{disk}/teacher-outputs/" in reason and "No space left on device" in reason
    assert "live teacher" in reason and reason in child.stderr  # and warned, in one line
    assert left == []
