"""Two trainings on one machine's CPUs: the time per training step of a run alone, of two runs
side by side each free to use every CPU (torch's default threads: what two `kdbench run`s did,
and what two unpinned processes still do), and of the same two runs through
`kdbench sweep run --parallel 2`, whose slots each get their own CPUs and one thread per CPU.
Run it on an otherwise idle machine; it prints one line per setup and the slowdowns.

    python tests/benchmarks/side_by_side.py             # vanilla resnet10t, SynthFF, 2 epochs
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

RUN = {
    "student": {"name": "resnet10t"},
    "data": {"name": "synthff", "params": {"videos": 300}, "batch_size": 64},
    "train": {"epochs": 3, "precision": "fp32", "test_epochs": "best"},
}


def kdbench(*args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "kdbench.cli", *args]
    env = os.environ | {"CI": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def step_times(results: Path) -> list[float]:
    """Seconds per training step of every epoch after the first (warm), of every run."""
    times = []
    for path in sorted((results / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        assert record["status"] == "done", record.get("error")
        times += [e["time_s"] / e["steps"] for e in record["history"][1:]]
    return times


def threads_of(results: Path) -> list[int]:
    return [json.loads(p.read_text())["cpu"]["threads"] for p in (results / "runs").glob("*.json")]


def finish(*procs: subprocess.Popen) -> None:
    for proc in procs:
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]


def main() -> None:
    root = Path(tempfile.mkdtemp())
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump(RUN))
    spec = root / "two.yaml"
    spec.write_text(yaml.safe_dump({"name": "two", "base": RUN, "grid": {"seed": [0, 1]}}))
    rows = {}
    alone = root / "alone"
    finish(kdbench("run", str(config), "--results", str(alone)))
    rows["alone"] = alone
    free = [root / "free0", root / "free1"]
    finish(
        *(kdbench("run", str(config), f"seed={k}", "--results", str(r)) for k, r in enumerate(free))
    )
    rows["two side by side, unpinned"] = free
    pinned = root / "pinned"
    finish(kdbench("sweep", "run", str(spec), "--parallel", "2", "--results", str(pinned)))
    rows["two via sweep --parallel 2 (pinned)"] = pinned
    base = None
    print(f"CPUs: {len(os.sched_getaffinity(0))}; s/step: median (min-max) over warm epochs")
    for name, folders in rows.items():
        folders = folders if isinstance(folders, list) else [folders]
        times = [t for f in folders for t in step_times(f)]
        threads = [n for f in folders for n in threads_of(f)]
        median = statistics.median(times)
        base = base or median
        print(f"{name:<38} {median:.3f} ({min(times):.3f}-{max(times):.3f})  "
              f"threads {threads}  x{median / base:.2f} of alone")  # fmt: skip


if __name__ == "__main__":
    main()
