"""pytest-benchmark: ``kdbench report`` on 1,000 synthetic run JSONs (goal: ≤ 20 s on 2 cores).

The runs look like a real sweep: RepDistiller's 13 CIFAR-100 pairs (240 epochs of history each)
and SynthFF at three qualities with two students and eleven methods, seeds until 1,000 runs,
a few of them failed. ``pytest tests/benchmarks/test_report_speed.py --benchmark-only``; on a
shared machine add ``--benchmark-timer=time.process_time`` (the report is single-threaded, so
its CPU time is its wall time on an idle machine).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdbench.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TeacherConfig
from kdbench.report import REFERENCES, load_runs, write_report

RUNS = 1000
FF_METHODS = ["kd", "fitnets", "at", "crd", "feat-spatial", "feat-frequency", "feat-both"]
FF_METHODS += [f"two-in-one:{h}" for h in ("none", "magnitude", "pcgrad")]
FF_STUDENTS = {"resnet10t": (4.9e6, 9.0e7, 0.68), "mobilenetv3_small_050": (0.6e6, 4.0e6, 0.61)}
CIFAR_MODELS = {  # params, FLOPs at 32x32, rough top-1
    "resnet20": (0.28e6, 4.1e7, 0.69),
    "resnet32": (0.47e6, 6.9e7, 0.71),
    "resnet56": (0.86e6, 1.25e8, 0.72),
    "resnet110": (1.7e6, 2.5e8, 0.74),
    "resnet8x4": (1.23e6, 1.77e8, 0.72),
    "resnet32x4": (7.43e6, 1.08e9, 0.79),
    "wrn_16_2": (0.70e6, 1.01e8, 0.73),
    "wrn_40_1": (0.57e6, 8.3e7, 0.72),
    "wrn_40_2": (2.26e6, 3.28e8, 0.76),
    "vgg8": (3.96e6, 6.4e7, 0.70),
    "vgg13": (9.46e6, 2.28e8, 0.75),
    "MobileNetV2": (0.81e6, 6.0e6, 0.65),
    "ShuffleV1": (0.95e6, 3.8e7, 0.71),
    "ShuffleV2": (1.36e6, 4.5e7, 0.72),
    "ResNet50": (23.7e6, 1.3e9, 0.79),
}


def sweep() -> list[tuple[RunConfig, tuple[float, float, float]]]:
    """One seed of every run: (config, (params, flops, base score))."""
    cifar = DataConfig(name="cifar100", params={"root": "/data/cifar-100-python"})
    pairs = pd.read_csv(REFERENCES / "repdistiller_cifar100.csv", comment="#")
    runs = []
    for model in sorted(set(pairs["teacher"]) | set(pairs["student"])):
        runs.append((RunConfig(student=ModelConfig(model), data=cifar), CIFAR_MODELS[model]))
    for teacher, student in zip(pairs["teacher"], pairs["student"], strict=True):
        for method in ("kd", "fitnets", "at", "crd"):
            cfg = RunConfig(
                student=ModelConfig(student),
                teacher=TeacherConfig(teacher, run="0" * 12),
                method=MethodConfig(method),
                data=cifar,
            )
            runs.append((cfg, CIFAR_MODELS[student]))
    for quality in ("raw", "hq", "lq"):
        data = DataConfig(params={"quality": quality})
        runs.append((RunConfig(student=ModelConfig("dual-branch"), data=data), (22e6, 3.3e8, 0.8)))
        for student, method in itertools.product(FF_STUDENTS, ["vanilla", *FF_METHODS]):
            name, _, homogenize = method.partition(":")
            cfg = RunConfig(
                student=ModelConfig(student),
                teacher=None if name == "vanilla" else TeacherConfig("dual-branch", run="1" * 12),
                method=MethodConfig(name, {"homogenize": homogenize} if homogenize else {}),
                data=data,
            )
            runs.append((cfg, FF_STUDENTS[student]))
    return runs


def record(cfg: RunConfig, cost: tuple[float, float, float], rng: np.random.Generator) -> dict:
    params, flops, base = cost
    epochs = 240 if cfg.data.name == "cifar100" else 6
    gain = 0.0 if cfg.teacher is None else rng.normal(0.015, 0.01)
    curve = base + gain - 0.2 * np.exp(-np.arange(1, epochs + 1) / (epochs / 4))

    def metrics(score: float) -> dict:
        if cfg.data.name == "cifar100":
            return {"acc": score, "top5": min(1.0, score + 0.2)}
        return {"acc": score - 0.05, "auc": score, "video_acc": score - 0.04, "video_auc": score}

    history = [
        {"epoch": e, "val": metrics(s + rng.normal(0, 0.005)), "test": metrics(s)}
        for e, s in enumerate(curve, 1)
    ]
    best = {"epoch": epochs, "val": history[-1]["val"], "test": history[-1]["test"]}
    return {
        "run_id": cfg.run_id(),
        "status": "done",
        "config": asdict(cfg),
        "history": history,
        "best": best,
        "last": best,
        "cost": {"student": {"params": int(params), "flops": int(flops), "unsupported_ops": {}}},
        "finished": "2026-11-24T00:00:00+00:00",
    }


def write_runs(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    grid = sweep()
    runs = folder / "runs"
    runs.mkdir(parents=True)
    for i, (seed, (cfg, cost)) in enumerate(itertools.product(range(n), grid)):
        if i == n:
            break
        cfg.seed = seed
        entry = record(cfg, cost, rng)
        if i % 250 == 7:
            entry = {"run_id": cfg.run_id(), "status": "failed", "config": asdict(cfg)}
            entry["error"] = "RuntimeError: CUDA out of memory"
        (runs / f"{cfg.run_id()}.json").write_text(json.dumps(entry))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sweep")
    write_runs(folder, RUNS)
    return folder


def test_report_on_1000_runs(benchmark, results, tmp_path):
    def report():
        return write_report(load_runs([results])[0], tmp_path / "report")

    summary = benchmark.pedantic(report, rounds=1, iterations=1)
    assert (summary.runs, summary.failed) == (RUNS, 4)
    assert summary.datasets == ["cifar100", "synthff hq", "synthff lq", "synthff raw"]
    assert summary.references == 13 * 4 + 9 + 6  # every published pair, student and teacher
