"""`guidedmarl.studies.stats`: mean and spread over seeds, power-law fits, bootstrap of slopes."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from guidedmarl.studies import stats
from guidedmarl.studies.reporting import plus_minus


def test_spread_is_the_sample_std_and_undefined_for_one_seed() -> None:
    assert stats.mean_spread([-50.0, -52.0, -51.0]) == (-51.0, 1.0)  # ddof = 1: sqrt(2 / 2)
    mean, spread = stats.mean_spread([-50.3])
    assert mean == -50.3 and math.isnan(spread)  # one seed: no spread, not a spread of 0
    assert plus_minus(mean, spread) == "-50.3" and plus_minus(-51.0, 1.0) == "-51.0 ± 1.0"
    # None, NaN and infinities are left out of both
    assert stats.mean_spread([1.0, None, float("nan"), 3.0, float("inf")]) == (2.0, math.sqrt(2.0))
    assert all(math.isnan(x) for x in stats.mean_spread([]))
    assert math.isnan(stats.spread([float("nan"), 4.0]))
    # the same as the standard library's definitions, whatever the order of the seeds
    values = [0.1 * k**1.5 for k in range(1, 30)]
    assert stats.spread(values) == statistics.stdev(values) == stats.spread(values[::-1])


def test_power_law_slope_on_exact_data() -> None:
    ns = np.array([10, 30, 100, 300, 1000, 1500])
    for slope in (0.0, 1.0, -0.5, 2.0):
        fit = stats.fit_power_law(ns, 3.7 * ns**slope)
        assert fit.slope == pytest.approx(slope, abs=1e-10)
        assert fit.intercept == pytest.approx(math.log(3.7), abs=1e-10)
        assert fit.se == pytest.approx(0.0, abs=1e-10) and fit.points == 6
        assert fit.ci_low == pytest.approx(slope, abs=1e-9) and fit.ci_high == pytest.approx(slope, abs=1e-9)
    two = stats.fit_power_law([10, 100], [1.0, 10.0])
    assert two.slope == pytest.approx(1.0) and math.isnan(two.se) and math.isnan(two.ci_low)  # no t-interval
    assert math.isnan(stats.fit_power_law([5], [1.0]).slope)
    assert math.isnan(stats.fit_power_law([5, 5], [1.0, 2.0]).slope)  # one distinct N


def test_regression_interval_covers_the_true_slope_about_95_percent_of_the_time() -> None:
    ns = np.array([10, 30, 100, 300, 1000, 1500])
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        fit = stats.fit_power_law(ns, 2.0 * ns**1.0 * np.exp(rng.normal(0.0, 0.2, ns.size)))
        covered += fit.ci_low <= 1.0 <= fit.ci_high
    assert 0.90 <= covered / 400 <= 0.99


def test_bootstrap_slopes_match_the_fit_and_drop_unusable_resamples() -> None:
    ns = [10, 100, 1000]
    samples = np.array([[1.0, 10.0, 100.0], [2.0, 2.0, 2.0], [1.0, -1.0, 3.0], [1.0, float("nan"), 3.0]])
    slopes = stats.bootstrap_slopes(ns, samples)
    assert slopes.tolist() == pytest.approx([1.0, 0.0])  # rows 3 and 4 cannot be fitted on a log scale
    assert stats.bootstrap_slopes(ns, np.zeros((0, 3))).size == 0
    assert all(math.isnan(x) for x in stats.percentile_interval([]))
    assert stats.percentile_interval(np.arange(1001.0)) == (25.0, 975.0)


def test_bootstrap_interval_covers_the_true_slope_on_synthetic_data() -> None:
    """Known truth: at each N, R noisy measurements whose mean is c N^s. The bootstrap over
    measurements (resampled within each N, the fit repeated per resample) must give a 95 %
    percentile interval that covers s in roughly 95 % of repetitions."""
    ns = np.array([10, 30, 100, 300, 1000])
    true_slope, reps, resamples = 0.8, 40, 200
    rng = np.random.default_rng(1)
    covered, widths = 0, []
    for _ in range(150):
        data = 5.0 * ns[:, None] ** true_slope * rng.gamma(4.0, 0.25, size=(ns.size, reps))  # mean c N^s
        idx = rng.integers(0, reps, size=(resamples, ns.size, reps))
        boot = np.take_along_axis(data[None, :, :].repeat(resamples, 0), idx, axis=2).mean(-1)  # [B, points]
        low, high = stats.percentile_interval(stats.bootstrap_slopes(ns, boot))
        covered += low <= true_slope <= high
        widths.append(high - low)
    assert 0.88 <= covered / 150 <= 0.99  # 0.947 with this generator
    assert 0.0 < float(np.median(widths)) < 0.2  # informative, not trivially wide
