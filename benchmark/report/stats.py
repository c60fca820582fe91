"""The report's statistics, as pure functions of numbers in points (percent): whether a
learning curve has converged, t-intervals over seeds, and the power of a paired t-test.

scipy is imported where it is used: the command line reads this module's constants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CONVERGED_WITHIN = 0.5  # points: a converged curve moves less than this over its last quarter
CONFIDENCE = 0.95
ALPHA = 0.05  # two-sided
POWER = 0.8
TARGET_DIFFERENCE = 2.0  # points: the difference the report says how many seeds detect
MOST_SEEDS = 1000  # seeds_needed looks no further


def last_quarter_movement(curve: Sequence[float]) -> float:
    """max − min of ``curve`` (one value per epoch) over its last ceil(E/4) epochs, at least
    the last 2; NaN for a curve of fewer than 2 epochs or with a missing value there."""
    values = np.asarray(curve, float)
    if len(values) < 2:
        return math.nan
    tail = values[-max(2, math.ceil(len(values) / 4)) :]
    return float(tail.max() - tail.min())


def t_half_width(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the t-interval of a mean of ``n`` values with sample std ``std``."""
    from scipy import stats

    if n < 2 or math.isnan(std):
        return math.nan
    return float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n))


def pooled_std(counts: Sequence[int], stds: Sequence[float]) -> float:
    """The pooled sample std of samples of ``counts`` values with sample stds ``stds``:
    sqrt(Σ (k − 1) s² / Σ (k − 1)); samples of fewer than 2 values or no std are left out."""
    pairs = [(k, s) for k, s in zip(counts, stds, strict=True) if k >= 2 and not math.isnan(s)]
    dof = sum(k - 1 for k, _ in pairs)
    return math.sqrt(sum((k - 1) * s**2 for k, s in pairs) / dof) if dof else math.nan


def paired_power(difference: float, sigma_d: float, n: int, alpha: float = ALPHA) -> np.ndarray:
    """Power of a two-sided paired t-test at level ``alpha`` with ``n`` pairs (a number or an
    array) whose differences have mean ``difference`` and std ``sigma_d``.

    The statistic is noncentral t with n − 1 degrees of freedom and noncentrality
    δ = difference·√n / σ_d, so the power is P(T > t*) + P(T < −t*) for the critical value
    t* = t_{1−α/2, n−1}.
    """
    from scipy import stats

    n = np.asarray(n, float)
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = difference * np.sqrt(n) / sigma_d
    return stats.nct.sf(critical, df, noncentrality) + stats.nct.sf(critical, df, -noncentrality)


def minimum_detectable_difference(
    sigma_d: float, n: int, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The smallest mean difference that ``paired_power`` detects with probability ``power``
    (NaN without a spread or with fewer than 2 pairs)."""
    from scipy import optimize

    if n < 2 or not sigma_d > 0:
        return math.nan
    high = sigma_d
    while paired_power(high, sigma_d, n, alpha) < power:
        high *= 2
    return optimize.brentq(lambda d: paired_power(d, sigma_d, n, alpha) - power, 0.0, high)


def seeds_needed(
    sigma_d: float, difference: float, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """The fewest pairs (≥ 2) with which ``paired_power`` reaches ``power`` for
    ``difference``; None without a spread or beyond MOST_SEEDS."""
    if not sigma_d > 0:
        return None
    n = np.arange(2, MOST_SEEDS + 1)
    enough = np.flatnonzero(paired_power(difference, sigma_d, n, alpha) >= power)
    return int(n[enough[0]]) if len(enough) else None
