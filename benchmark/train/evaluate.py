"""Evaluation in one place: the student's predictions on a split, and their metrics (accuracy,
ROC AUC, average precision and equal error rate, frame-level and video-level, and the AUC per
kind of fake)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from kdbench.train.device import to_device
from kdbench.train.distributed import gather
from kdbench.train.precision import autocast
from kdbench.train.step import DivergedError

if TYPE_CHECKING:
    from kdbench.train.setup import Setup


@torch.no_grad()
def evaluate(setup: Setup, split: str, epoch: int = 0) -> dict[str, float]:
    """Metrics of the student on ``split`` (frame- and video-level for binary tasks, and per
    kind of fake where the dataset names them in ``kinds``). Where the run's processes each
    predict a share of the split, their predictions are gathered first, in order."""
    kinds = getattr(setup.datasets[split], "kinds", None)  # the whole split's
    parts = gather(predict(setup, split, kinds is not None))
    if not all(part["finite"] for part in parts):
        raise DivergedError(
            f"diverged at epoch {epoch + 1}: the student's outputs on {split} are not finite"
        )
    videos = [v for part in parts for v in part["videos"]]
    index = [i for part in parts for i in part["index"]]
    return classification_metrics(
        np.concatenate([part["probs"] for part in parts]),
        np.concatenate([part["labels"] for part in parts]),
        videos or None,
        [kinds[i] for i in index] if kinds is not None else None,
    )


def predict(setup: Setup, split: str, with_index: bool) -> dict:
    """This process's predictions on (its share of) ``split``: class probabilities, labels,
    videos, sample indices (``with_index``) and whether every output was finite."""
    model = setup.evaluated.eval()
    probs, labels, videos, index, finite = [], [], [], [], True
    for batch in setup.loaders[split]:
        with autocast(setup.device, setup.dtype):
            logits = model(to_device(batch, setup.device)["image"]).logits
        finite = finite and bool(torch.isfinite(logits).all())
        probs.append(logits.float().softmax(1).cpu())
        labels.append(batch["label"])
        videos.extend(batch.get("video", ()))  # optional: video-level metrics need it
        index.extend(batch["index"].tolist() if with_index else [])
    if not probs:  # a split smaller than the run's processes: this one has no share
        probs, labels = [torch.zeros(0, setup.method.num_classes)], [torch.zeros(0, dtype=int)]
    return {
        "probs": torch.cat(probs).numpy(),
        "labels": torch.cat(labels).numpy(),
        "videos": videos,
        "index": index,
        "finite": finite,
    }


def classification_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    videos: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
) -> dict[str, float]:
    """``probs``: [N, C] class probabilities; ``labels``: [N] ints.

    Two classes (1 = fake): ``acc``, ``auc``, ``ap`` (average precision, fakes positive) and
    ``eer`` (equal error rate) of P(fake) and, given ``videos``, the same at video level
    (``video_acc``, ``video_auc``, ``video_ap``, ``video_eer``), each video scored by its mean
    P(fake) and keyed by its full path, so ``Deepfakes/071_054`` and ``Face2Face/071_054`` stay
    distinct.
    Given ``kinds`` (each fake's manipulation, e.g. ``Deepfakes``), also ``auc_<kind>``: the
    AUC of the real samples against that kind's fakes alone.
    More classes: ``acc`` and ``top5``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    out = {"acc": float(np.mean(probs.argmax(1) == labels))}
    if probs.shape[1] != 2:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        out["top5"] = float(np.mean((top5 == labels[:, None]).any(1)))
        return out
    out |= ranking_metrics(labels, probs[:, 1])
    if videos is not None:
        video_labels, video_scores = per_video(labels, probs[:, 1], videos)
        out["video_acc"] = float(np.mean((video_scores >= 0.5) == video_labels))
        video = ranking_metrics(video_labels, video_scores)
        out |= {f"video_{name}": value for name, value in video.items()}
    if kinds is not None:
        out |= auc_per_kind(labels, probs[:, 1], np.asarray(kinds, dtype=str))
    return out


def auc_per_kind(labels: np.ndarray, scores: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
    """``auc_<kind>`` for each kind of fake: reals against that kind's fakes only."""
    real = labels == 0
    return {
        f"auc_{kind}": binary_auc(labels[real | (kinds == kind)], scores[real | (kinds == kind)])
        for kind in sorted(set(kinds[labels == 1]))
    }


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """``auc``, ``ap`` and ``eer`` of fake-scores ``scores``; NaN where one class is absent."""
    if len(np.unique(labels)) < 2:
        return {"auc": math.nan, "ap": math.nan, "eer": math.nan}
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "ap": float(average_precision_score(labels, scores)),
        "eer": equal_error_rate(labels, scores),
    }


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The error rate at the threshold where the false positive rate (reals called fake)
    equals the false negative rate (fakes called real), on the ROC curve linearly interpolated
    between the two thresholds around the crossing. (DeepfakeBench reports the FPR of the ROC
    point nearest to the crossing, which differs by at most that step.)"""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    k = int(np.argmax(fnr <= fpr))  # first point at or past the crossing (fnr falls, fpr rises)
    if k == 0:
        return float(fpr[0])
    gap_before, gap_after = fnr[k - 1] - fpr[k - 1], fnr[k] - fpr[k]  # > 0, <= 0
    t = gap_before / (gap_before - gap_after)
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def binary_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN when only one class is present (AUC is undefined there)."""
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def per_video(
    labels: np.ndarray, scores: np.ndarray, videos: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean score and the (shared) label of each video, videos keyed by their full path."""
    keys, inverse = np.unique(np.asarray(videos, dtype=object).astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(keys))
    mean_scores = np.bincount(inverse, weights=scores, minlength=len(keys)) / counts
    video_labels = np.zeros(len(keys), dtype=labels.dtype)
    video_labels[inverse] = labels
    mixed = np.bincount(inverse, weights=labels, minlength=len(keys)) / counts
    if not np.all((mixed == 0) | (mixed == 1)):
        bad = keys[(mixed != 0) & (mixed != 1)][:3]
        raise ValueError(f"videos with frames of both labels: {list(bad)}")
    return video_labels, mean_scores
