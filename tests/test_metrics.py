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


def test_eer_where_the_two_error_rates_meet_exactly():
    # reals 0.1-0.4, fakes 0.35-0.7: calling >= 0.38 fake misses one fake (0.35) and flags
    # one real (0.4): FPR = FNR = 1/4, and no threshold does better on both.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = [0.1, 0.2, 0.3, 0.4, 0.35, 0.5, 0.6, 0.7]
    m = classification_metrics(binary_probs(p), labels)
    assert m["eer"] == pytest.approx(0.25)
    separable = classification_metrics(binary_probs([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    assert separable["eer"] == 0.0 and separable["ap"] == 1.0
    inverted = classification_metrics(binary_probs([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1]))
    assert inverted["eer"] == 1.0


def error_rates(labels, scores, threshold):
    """FPR and FNR of calling ``score >= threshold`` fake."""
    fake = scores >= threshold
    return np.mean(fake[labels == 0]), np.mean(~fake[labels == 1])


def test_eer_is_the_crossing_of_the_error_rates_over_every_threshold():
    """Against a transcription of the definition: FPR and FNR at every threshold (each score,
    and above the largest), the segment where FNR - FPR changes sign, and the point where the
    two straight lines meet; DeepfakeBench's nearest ROC point is within that segment."""
    rng = np.random.default_rng(3)
    for trial in range(20):
        labels = rng.integers(0, 2, 60)
        scores = np.round(np.clip(labels * 0.25 + rng.random(60) * 0.75, 0, 1), 2)  # ties
        thresholds = np.r_[np.inf, np.sort(np.unique(scores))[::-1]]
        rates = np.array([error_rates(labels, scores, t) for t in thresholds])  # FPR up, FNR down
        gap = rates[:, 1] - rates[:, 0]
        k = int(np.argmax(gap <= 0))
        (fpr0, fnr0), (fpr1, fnr1) = rates[k - 1], rates[k]
        # fpr0 + t (fpr1 - fpr0) = fnr0 + t (fnr1 - fnr0)
        t = (fnr0 - fpr0) / ((fpr1 - fpr0) - (fnr1 - fnr0))
        expected = fpr0 + t * (fpr1 - fpr0)
        m = classification_metrics(binary_probs(scores), labels)
        assert m["eer"] == pytest.approx(expected), trial
        nearest = rates[np.argmin(np.abs(gap)), 0]  # DeepfakeBench: fpr[argmin |fnr - fpr|]
        assert abs(m["eer"] - nearest) <= max(fpr1 - fpr0, fnr0 - fnr1) + 1e-12


def test_average_precision_is_precision_summed_over_recall_steps():
    """AP = sum over thresholds of (R_n - R_(n-1)) P_n (scikit-learn's definition, no
    interpolation), transcribed here, with ties sharing one threshold."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 80)
    scores = np.round(labels * 0.2 + rng.random(80) * 0.8, 2)
    ap, recall_before = 0.0, 0.0
    for t in np.sort(np.unique(scores))[::-1]:
        called = scores >= t
        recall = np.sum(called & (labels == 1)) / np.sum(labels == 1)
        precision = np.sum(called & (labels == 1)) / np.sum(called)
        ap += (recall - recall_before) * precision
        recall_before = recall
    m = classification_metrics(binary_probs(scores), labels)
    assert m["ap"] == pytest.approx(ap)


def test_video_level_ap_and_eer_score_each_video_once():
    videos = ["f/a"] * 2 + ["f/b"] * 2 + ["r/c"] * 2 + ["r/d"] * 2
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    p = [0.9, 0.7, 0.2, 0.4, 0.35, 0.45, 0.1, 0.1]  # video means: 0.8, 0.3 | 0.4, 0.1
    m = classification_metrics(binary_probs(p), labels, videos)
    assert m["video_eer"] == pytest.approx(0.5) and m["video_ap"] == pytest.approx(
        0.5 + 0.5 * 2 / 3
    )
    one_class = classification_metrics(binary_probs([0.2, 0.9]), np.array([1, 1]))
    assert math.isnan(one_class["eer"]) and math.isnan(one_class["ap"])


def test_selecting_by_eer_picks_the_smallest_and_by_auc_the_largest():
    from kdbench.train.record import best_epoch

    history = [
        {"epoch": 1, "val": {"acc": 0.6, "auc": 0.7, "eer": 0.30}, "test": {}},
        {"epoch": 2, "val": {"acc": 0.6, "auc": 0.8, "eer": 0.35}, "test": {}},
        {"epoch": 3, "val": {"acc": 0.6, "auc": 0.6, "eer": math.nan}, "test": {}},
    ]
    assert best_epoch(history, "eer")["epoch"] == 1  # NaN counts last, whichever way
    assert best_epoch(history, "auc")["epoch"] == 2
