"""A tuning sweep's verdict: per method, the parameter setting with the best validation score."""

from __future__ import annotations

import json
from dataclasses import dataclass

from kdbench.config import ConfigError
from kdbench.report.labels import better


@dataclass
class Candidate:
    """One parameter setting of a method in a tuning sweep, scored on the validation split."""

    method: str
    setting: dict  # the parameters that vary between this method's candidates
    scores: list[float]  # per seed: the validation metric at the run's best (val) epoch
    chosen: bool = False

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


def pick(records: list[dict], metric: str = "auc") -> list[Candidate]:
    """Per method, the parameter setting with the best mean validation ``metric`` over its
    seeds (the test split is never read); ties go to the first setting in the sweep."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        method = record["config"]["method"]
        key = (method["name"], json.dumps(method["params"], sort_keys=True, default=str))
        groups.setdefault(key, []).append(record)
    candidates = []
    for name in dict.fromkeys(name for name, _ in groups):
        settings = {json_params: runs for (n, json_params), runs in groups.items() if n == name}
        varied = varying_keys([json.loads(p) for p in settings])
        own = [candidate(name, json.loads(p), varied, runs, metric) for p, runs in settings.items()]
        max(own, key=lambda c: better(metric, c.mean)).chosen = True
        candidates += own
    return candidates


def candidate(name: str, params: dict, varied: list[str], runs: list[dict], metric: str):
    setting = {key: params.get(key) for key in varied}
    return Candidate(name, setting, [val_score(run, metric) for run in runs])


def varying_keys(settings: list[dict]) -> list[str]:
    keys = sorted({k for s in settings for k in s})
    return [k for k in keys if len({json.dumps(s.get(k), default=str) for s in settings}) > 1]


def val_score(record: dict, metric: str) -> float:
    val = record["best"]["val"]
    if metric not in val:
        raise ConfigError(f"metric {metric!r} is not in the validation metrics ({', '.join(val)})")
    return val[metric]
