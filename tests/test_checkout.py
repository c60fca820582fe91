"""The first command on a fresh clone leaves it clean: everything kdbench writes by default
(``results/``: runs, checkpoints, jobs, the demo's report) is ignored by git, and no tracked file
lives there (the committed example reports are in ``reports/``)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WRITTEN = ["results/runs/x.json", "results/checkpoints/x/model.pt", "results/jobs/journal.jsonl"]
WRITTEN += ["results/demo/README.md", "results/demo/plots/a.png", "results/demo/tables/a.csv"]

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def test_what_kdbench_writes_by_default_is_ignored():
    ignored = git("check-ignore", "--no-index", *WRITTEN).stdout.split()
    assert sorted(ignored) == sorted(WRITTEN)


def test_no_tracked_file_lives_where_kdbench_writes():
    assert git("ls-files", "results").stdout == ""
    assert (ROOT / "reports" / "demo" / "README.md").is_file()
