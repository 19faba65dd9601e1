"""IQM and its bootstrap CI against plain-python references written here."""

from __future__ import annotations

import numpy as np
import pytest

from jaxrl.analysis import aggregate, bootstrap_ci, iqm, iqm_rows


def reference_iqm(values: list[float]) -> float:
    """Mean of the middle half by mass: each sorted value counts by how much of its unit
    interval [i, i+1) lies inside [n/4, 3n/4)."""
    xs = sorted(values)
    n = len(xs)
    total = weight_sum = 0.0
    for i, x in enumerate(xs):
        weight = max(0.0, min(i + 1, 0.75 * n) - max(i, 0.25 * n))
        total += weight * x
        weight_sum += weight
    return total / weight_sum


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 13, 64])
def test_iqm_matches_reference(n):
    values = np.random.default_rng(n).normal(size=n) * 10
    assert iqm(values) == pytest.approx(reference_iqm(list(values)), rel=1e-12)


def test_iqm_of_multiples_of_four_is_the_trimmed_mean():
    values = np.arange(8.0)[::-1]  # the middle four of 0..7 are 2..5
    assert iqm(values) == pytest.approx(3.5)
    assert np.isnan(iqm(np.array([])))


def test_iqm_rows_is_iqm_of_each_row():
    rows = np.random.default_rng(0).normal(size=(5, 9))
    np.testing.assert_allclose(iqm_rows(rows), [reference_iqm(list(r)) for r in rows], rtol=1e-12)


def test_bootstrap_ci_matches_a_loop_over_resamples():
    values = np.random.default_rng(1).exponential(size=10)
    rng = np.random.default_rng(7)  # the same draws bootstrap_ci makes with seed=7
    samples = values[rng.integers(0, values.size, size=(500, values.size))]
    stats = [reference_iqm(list(s)) for s in samples]
    expected = (np.quantile(stats, 0.05), np.quantile(stats, 0.95))
    low, high = bootstrap_ci(values, iqm, confidence=0.9, resamples=500, seed=7)
    assert (low, high) == pytest.approx(expected, rel=1e-12)
    # any other statistic goes through the same resamples one by one
    low, high = bootstrap_ci(values, np.median, confidence=0.9, resamples=500, seed=7)
    assert (low, high) == pytest.approx((np.quantile(np.median(samples, axis=1), 0.05),
                                         np.quantile(np.median(samples, axis=1), 0.95)))


def test_aggregate_orders_its_figures():
    stats = aggregate(np.random.default_rng(2).normal(size=16))
    assert stats["min"] <= stats["iqm_ci_low"] <= stats["iqm"] <= stats["iqm_ci_high"] <= stats["max"]
    assert stats["count"] == 16
