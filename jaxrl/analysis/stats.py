"""Aggregate statistics over seeds, after Agarwal et al. (2021): IQM with bootstrap CIs."""

from __future__ import annotations

from typing import Callable

import numpy as np


def iqm_rows(values: np.ndarray) -> np.ndarray:
    """Interquartile mean of each row (last axis): the mean of the middle 50% of values,
    quartiles trimmed by mass. Vectorised so a bootstrap of thousands of resamples is one call.

    Uses fractional weights at the cut points so it is exact for any count, e.g. for 6
    values the two middle values count fully and their neighbours by half.
    """
    x = np.sort(np.asarray(values, dtype=np.float64), axis=-1)
    n = x.shape[-1]
    lo, hi = 0.25 * n, 0.75 * n
    # Weight of sorted item i = overlap of [i, i+1) with [lo, hi).
    index = np.arange(n)
    weights = np.clip(np.minimum(index + 1, hi) - np.maximum(index, lo), 0.0, 1.0)
    return x @ weights / np.sum(weights)


def iqm(values: np.ndarray) -> float:
    """Interquartile mean of all values (see `iqm_rows`); NaN when there are none."""
    x = np.asarray(values, dtype=np.float64).ravel()
    return float(iqm_rows(x)) if x.size else float("nan")


def bootstrap_ci(values: np.ndarray, statistic: Callable[[np.ndarray], float] = iqm,
                 confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic` over seeds."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, size=(resamples, x.size))]
    stats = iqm_rows(samples) if statistic is iqm else np.array([statistic(s) for s in samples])
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def aggregate(values: np.ndarray, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Mean, std, IQM with its bootstrap CI, min and max of per-seed values."""
    x = np.asarray(values, dtype=np.float64).ravel()
    low, high = bootstrap_ci(x, iqm, confidence, seed=seed)
    return {"mean": float(x.mean()), "std": float(x.std()), "iqm": iqm(x), "iqm_ci_low": low,
            "iqm_ci_high": high, "min": float(x.min()), "max": float(x.max()), "count": int(x.size)}
