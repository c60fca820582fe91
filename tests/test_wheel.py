"""kdbench works as an installed wheel, away from the checkout: the package data (presets,
references) ships inside it, and no path is found relative to the source tree.

The wheel is built from the checkout and installed (``--no-deps``, non-editable) into a folder
of its own that comes first on ``sys.path``, so the checkout's editable install cannot answer.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def pip(*args: str, cwd: Path = ROOT) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """``{"site": folder, "env": environment}`` of a wheel of this checkout, installed."""
    work = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(ROOT))
    (wheel,) = (work / "dist").glob("kdbench-*.whl")
    pip("install", "--no-deps", "--target", str(work / "site"), str(wheel))
    env = dict(os.environ, PYTHONPATH=str(work / "site"), CI="1")
    env["KDBENCH_CACHE"] = str(work / "cache")
    return {"site": work / "site", "env": env}


def kdbench(installed: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    code = "import sys; from kdbench.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, cwd=cwd, env=installed["env"], capture_output=True, text=True)


def test_the_installed_package_is_not_the_checkout(installed, tmp_path):
    code = (
        "import kdbench, kdbench.methods, kdbench.models\n"
        "from kdbench.report.references import REFERENCES, load_references\n"
        "assert len(load_references(REFERENCES)) > 10\n"  # the published numbers are package data
        "print(kdbench.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=installed["env"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(done.stdout.strip()).is_relative_to(installed["site"])


def test_demo_and_report_run_from_a_folder_outside_the_checkout(installed, tmp_path):
    demo = kdbench(installed, tmp_path, "demo", "--preset", "smoke")
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert len(list((tmp_path / "results" / "runs").glob("*.json"))) == 5
    report = kdbench(installed, tmp_path, "report", "results", "--out", "rep")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "| two-in-one+KD |" in (tmp_path / "rep" / "README.md").read_text()
