"""What the tables call things: a run's data, model and method as short labels, and metrics by
their usual names. Plain Python: the sweep's tables and log lines use them too."""

from __future__ import annotations

METRIC_LABELS = {
    "acc": "ACC",
    "top5": "top-5",
    "auc": "AUC",
    "ap": "AP",
    "eer": "EER",
    "video_acc": "video ACC",
    "video_auc": "video AUC",
    "video_ap": "video AP",
    "video_eer": "video EER",
}
LOWER_IS_BETTER = frozenset({"eer", "video_eer"})  # every other metric: higher is better


def better(metric: str, value: float) -> float:
    """``value`` of ``metric`` turned so that larger is better (EER negated)."""
    return -value if metric in LOWER_IS_BETTER else value


def data_label(data: dict) -> str:
    """``synthff lq``, ``synthff lq 25% train`` (``train_fraction``), ``ff++ -> celebdf``."""
    quality = data["params"].get("quality")
    test = f" -> {data['test']['name']}" if data.get("test") else ""
    fraction = data.get("train_fraction", 1.0)
    part = f" {100 * fraction:g}% train" if fraction != 1.0 else ""
    return data["name"] + (f" {quality}" if quality else "") + part + test


def model_label(model: dict) -> str:
    """The model's name plus its switched-on flags (``dual-branch+aux_heads+lfs``) and, for a
    single-branch dual-branch model, the branch."""
    kwargs = model.get("kwargs") or {}
    name = "+".join([model["name"], *sorted(k for k, v in kwargs.items() if v is True)])
    if kwargs.get("branch", "both") != "both":
        return f"{name} ({kwargs['branch']} only)"
    return name


def method_label(method: dict) -> str:
    """The method's name, ``+KD`` when it has a logit-KD term (``kd_weight`` > 0, as
    RepDistiller's "CRD+KD"), and the parameters it was given other than its defaults
    (``two-in-one+KD [homogenize=pcgrad]``)."""
    given = method.get("params") or {}
    params = not_defaults(method["name"], given)
    if params.get("kd_weight") == 1.0:  # what "+KD" says
        del params["kd_weight"]
    shown = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    kd = "+KD" if (given.get("kd_weight") or 0) > 0 else ""
    return method["name"] + kd + (f" [{shown}]" if shown else "")


def not_defaults(name: str, params: dict) -> dict:
    """``params`` less those equal to method ``name``'s defaults (all of them for a method
    that is not registered here, e.g. from a plugin not loaded)."""
    from kdbench.identity import defaults
    from kdbench.registry import METHODS, UnknownNameError

    try:
        known = defaults(METHODS.get(name))
    except UnknownNameError:
        return params
    return {k: v for k, v in params.items() if k not in known or known[k] != v}


def with_variant(method: str, variant: str) -> str:
    """A method's label with what sets its recipe apart: ``kd {train.epochs=20}``."""
    return f"{method} {{{variant}}}" if variant else method


def metric_label(metric: str) -> str:
    """``auc`` → ``AUC``; ``auc_<kind>`` (reals vs one kind of fake) → ``AUC <kind>``."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    return f"AUC {metric.removeprefix('auc_')}" if metric.startswith("auc_") else metric
