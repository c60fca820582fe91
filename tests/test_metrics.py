"""Metrics against sklearn, and video-level scores keyed by the full video path."""

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from kdbench.train.evaluate import classification_metrics


def binary_probs(p_fake):
    p_fake = np.asarray(p_fake, dtype=float)
    return np.stack([1 - p_fake, p_fake], 1)


def test_frame_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    p = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)
    m = classification_metrics(binary_probs(p), labels)
    assert m["acc"] == pytest.approx(accuracy_score(labels, p >= 0.5))
    assert m["auc"] == pytest.approx(roc_auc_score(labels, p))


def test_video_level_averages_per_full_path():
    # Same clip name under two manipulations: two videos, not one (DeepfakeBench's slip).
    videos = ["Deepfakes/071_054"] * 2 + ["Face2Face/071_054"] * 2 + ["real/071"] * 2
    labels = np.array([1, 1, 1, 1, 0, 0])
    p = [0.9, 0.7, 0.2, 0.4, 0.3, 0.5]
    m = classification_metrics(binary_probs(p), labels, videos)
    # video means: Deepfakes 0.8 (fake), Face2Face 0.3 (fake), real 0.4 (real)
    assert m["video_acc"] == pytest.approx(2 / 3)
    assert m["video_auc"] == pytest.approx(0.5)


def test_auc_is_nan_when_one_class_only():
    m = classification_metrics(binary_probs([0.2, 0.9]), np.array([1, 1]))
    assert math.isnan(m["auc"]) and m["acc"] == 0.5


def test_a_video_with_both_labels_is_an_error():
    with pytest.raises(ValueError, match="both labels"):
        classification_metrics(binary_probs([0.2, 0.9]), np.array([0, 1]), ["v", "v"])


def test_multiclass_gives_top1_and_top5():
    probs = np.eye(10)[[0, 1, 2, 3]] * 0.5 + 0.05
    probs[3] = np.linspace(0, 1, 10)  # true class 3 ranks 7th
    m = classification_metrics(probs, np.array([0, 1, 2, 3]))
    assert m == {"acc": 0.75, "top5": 0.75}


def test_auc_per_kind_compares_reals_with_one_kind_of_fake():
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    kinds = ["none", "none", "none", "spatial", "spatial", "frequency", "frequency"]
    p = np.array([0.1, 0.5, 0.3, 0.9, 0.2, 0.4, 0.6])
    m = classification_metrics(binary_probs(p), labels, kinds=kinds)
    real = slice(0, 3)
    spatial = np.r_[p[real], p[3:5]], [0, 0, 0, 1, 1]
    assert m["auc_spatial"] == pytest.approx(roc_auc_score(spatial[1], spatial[0]))
    assert m["auc_frequency"] == pytest.approx(5 / 6)  # 0.4 beats 0.1, 0.3; 0.6 beats all three
    assert "auc_none" not in m
