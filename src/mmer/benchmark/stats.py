"""Statistics over seeds: mean with sample standard deviation, and the paired comparison of two models.

- `summarize`: mean and the *sample* standard deviation (ddof=1, i.e. divided by n-1); with one value the std
  is undefined (NaN) and tables print the value with n=1.
- `paired_difference`: two models trained with the same seeds differ in seed-matched pairs; the mean of the
  per-seed differences d_i = a_i - b_i gets the t-based interval mean(d) ± t_{0.975, n-1} · sd(d, ddof=1) / √n
  and the two-sided paired t-test p-value. It needs at least two shared seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # sample std (ddof=1); NaN when n == 1
    n: int


def summarize(values: Sequence[float]) -> Summary:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to summarize")
    std = float(np.std(x, ddof=1)) if x.size > 1 else math.nan
    return Summary(float(x.mean()), std, int(x.size))


@dataclass(frozen=True)
class PairedDifference:
    n: int  # number of shared seeds
    mean_a: float
    mean_b: float
    mean_diff: float  # mean of a_i - b_i
    ci_low: float  # NaN when n < 2
    ci_high: float
    p_value: float  # two-sided paired t-test; NaN when n < 2 or every difference is equal
    confidence: float = 0.95


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """Seed-matched values of two models (a[i] and b[i] share a seed)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"paired values must be two equal-length non-empty lists, got {x.shape} and {y.shape}")
    d = x - y
    n = int(d.size)
    mean = float(d.mean())
    low = high = p = math.nan
    if n >= 2:
        sd = float(np.std(d, ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
        if sd > 0:
            p = float(stats.ttest_rel(x, y).pvalue)
    return PairedDifference(n, float(x.mean()), float(y.mean()), mean, low, high, p, confidence)
