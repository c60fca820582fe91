"""One permission policy for everything kdbench writes: that of a file ``open`` creates (0o666
less the umask), for run JSONs, checkpoints, teacher caches, corpora and manifests alike.
(Temp files from ``mkstemp`` are owner-only; they used to stay so once renamed into place.)"""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kdbench.results import write_json

KDBENCH = Path(sys.executable).parent / "kdbench"


def modes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
        for p in folder.rglob("*")
        if p.is_file() and p.suffix != ".lock"
    }


@pytest.mark.slow
def test_a_run_writes_every_file_with_the_umask_permissions(tmp_path):
    env = dict(os.environ, CI="1", KDBENCH_CACHE=str(tmp_path / "cache"))
    args = ["run", "--preset", "smoke", "--results", "out", "method.name=kd", "train.epochs=1"]
    args += ["teacher.train.epochs=1", "data.params.videos=20"]
    done = subprocess.run(
        [str(KDBENCH), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = modes(tmp_path / "out") | modes(tmp_path / "cache")
    assert any(name.startswith("runs/") for name in written)
    assert any(name.startswith("checkpoints/") for name in written)
    assert any(name.startswith("synthff/") for name in written)
    assert {name: mode for name, mode in written.items() if mode != 0o644} == {}


def test_a_private_umask_gives_private_files(tmp_path):
    old = os.umask(0o077)
    try:
        write_json(tmp_path / "runs" / "a.json", {"run_id": "a"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "runs" / "a.json").stat().st_mode) == 0o600
