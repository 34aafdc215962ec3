"""The statistics every study reports, each defined once.

* **Mean and spread over seeds** (:func:`mean`, :func:`spread`, :func:`mean_spread`): the
  arithmetic mean and the *sample* standard deviation (``ddof = 1``) of the finite values
  given; ``None``, NaN and infinities are left out. With fewer than two finite values the
  spread is **NaN** ("not defined"), never 0.0: one seed says nothing about the spread, and
  a 0.0 would read as "no spread". Tables then show the mean alone, JSON files ``null``.
  Both use exactly rounded sums (:func:`statistics.fmean`, :func:`statistics.stdev`), so
  the result does not depend on the order of the seeds.
* **Power law** (:func:`fit_power_law`): ``log y = intercept + slope log N`` by least
  squares, with the regression 95 % interval slope +- t_{n-2} * standard error (the misfit
  of a pure power law over the N grid).
* **Bootstrap of slopes** (:func:`bootstrap_slopes`, :func:`percentile_interval`): the same
  fit repeated on every bootstrap resample of the fitted values, and the percentile
  interval of the resulting slopes (the sampling noise of the measurements).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

NAN = float("nan")


def finite(values: Iterable[Any]) -> list[float]:
    """The finite values of ``values`` as floats (None, NaN and infinities left out)."""
    out = []
    for v in values:
        if v is None:
            continue
        x = float(v)
        if math.isfinite(x):
            out.append(x)
    return out


def mean(values: Iterable[Any]) -> float:
    """Mean of the finite values; NaN when there is none."""
    vals = finite(values)
    return statistics.fmean(vals) if vals else NAN


def spread(values: Iterable[Any]) -> float:
    """Sample standard deviation (ddof = 1) of the finite values; NaN for fewer than two."""
    vals = finite(values)
    return statistics.stdev(vals) if len(vals) > 1 else NAN


def mean_spread(values: Iterable[Any]) -> tuple[float, float]:
    """(:func:`mean`, :func:`spread`) of the same values."""
    vals = finite(values)
    return mean(vals), spread(vals)


@dataclass
class PowerLawFit:
    """``log y = intercept + slope log N`` by least squares.

    Attributes:
        slope, intercept: the least-squares line (NaN with fewer than two distinct N).
        se: regression standard error of the slope (NaN with fewer than three points).
        ci_low, ci_high: slope -+ t_{n-2, 0.975} se.
        points: how many (N, y) pairs were fitted.
        boot_low, boot_high: bootstrap percentile interval (2.5 %, 97.5 %), if computed.
        boot_used: bootstrap resamples in which every point was usable.
    """

    slope: float
    intercept: float
    se: float
    ci_low: float
    ci_high: float
    points: int
    boot_low: float = NAN
    boot_high: float = NAN
    boot_used: int = 0


def fit_power_law(ns: Any, values: Any) -> PowerLawFit:
    """Least-squares slope of log(values) against log(ns) (every value must be > 0)."""
    from scipy import stats as scipy_stats

    x = np.log(np.asarray(ns, dtype=np.float64))
    y = np.log(np.asarray(values, dtype=np.float64))
    n = x.size
    if n < 2 or np.ptp(x) == 0:
        return PowerLawFit(NAN, NAN, NAN, NAN, NAN, int(n))
    xm = x - x.mean()
    slope = float((xm * (y - y.mean())).sum() / (xm * xm).sum())
    intercept = float(y.mean() - slope * x.mean())
    if n > 2:
        resid = y - intercept - slope * x
        se = float(math.sqrt((resid * resid).sum() / (n - 2) / (xm * xm).sum()))
        half = float(scipy_stats.t.ppf(0.975, n - 2)) * se
    else:
        se = half = NAN
    return PowerLawFit(slope, intercept, se, slope - half, slope + half, int(n))


def bootstrap_slopes(ns: Any, samples: np.ndarray) -> np.ndarray:
    """Power-law slope of every resample: ``samples`` is ``[B, points]`` (one row per resample).

    Rows with a value that is not finite and positive cannot be fitted on a log scale and
    are dropped, so the result has at most B entries.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.size == 0:
        return np.zeros(0)
    ok = np.all(np.isfinite(samples) & (samples > 0), axis=1)
    if not ok.any():
        return np.zeros(0)
    x = np.log(np.asarray(ns, dtype=np.float64))
    xm = x - x.mean()
    y = np.log(samples[ok])
    return ((y - y.mean(axis=1, keepdims=True)) * xm).sum(axis=1) / (xm * xm).sum()


def percentile_interval(samples: Any, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``samples`` (NaN, NaN when empty)."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.size == 0:
        return NAN, NAN
    tail = (100.0 - 100.0 * level) / 2.0  # 2.5 exactly for level 0.95
    low, high = np.percentile(arr, [tail, 100.0 - tail])
    return float(low), float(high)
