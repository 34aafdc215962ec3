"""A written, testable definition of "converged", applied identically to every learner.

Given a learning curve r_1 ... r_K (test reward after each training episode), a *floor*
(e.g. the Random heuristic) and a *target* (e.g. Best-Fit) on the same test scenarios:

1. Smooth: m_k = mean of r_{max(1, k-w+1)} ... r_k (moving average over ``window`` = w).
2. Final level: F = m_K (the mean of the last w evaluations).
3. Quality gate: the run counts as converged only if F reaches at least ``min_fraction`` of
   the way from the floor to the target, (F - floor) / (target - floor) >= min_fraction.
   Converging to a bad policy (e.g. MAPPO settling at Random's level) is *not* convergence.
4. Stability: the run has converged at episode k if |m_j - F| <= ``tolerance`` *
   |target - floor| for every j >= k. The tolerance is a fraction of the floor-to-target
   range, so the definition does not depend on the reward's units.

``episodes_to_converge`` is the smallest such k (1-based), or None when the gate fails or the
curve is too short (fewer than ``window`` evaluations).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import math


@dataclass(frozen=True)
class ConvergenceCriterion:
    """Parameters of the definition above (defaults: w = 3, 2% band, 90% of the range).

    The 2 % band: on cloud the floor-to-target range is about 990 reward points, so the band
    is about 20 points, wider than the episode-to-episode movement of a converged DG-PG run
    (5-10 points at N = 50) and narrow enough that the first, still-improving evaluations
    (-100 and below against a final -50) do not count as converged. A 5 % band (49 points)
    let every DG-PG run count as converged at episode 1.
    """

    window: int = 3
    tolerance: float = 0.02
    min_fraction: float = 0.9

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 0 < self.tolerance <= 1:
            raise ValueError(f"tolerance must lie in (0, 1], got {self.tolerance}")
        if not 0 <= self.min_fraction <= 1:
            raise ValueError(f"min_fraction must lie in [0, 1], got {self.min_fraction}")

    def moving_average(self, curve: Sequence[float]) -> list[float]:
        """m_k for k = 1 ... K."""
        out = []
        for k in range(len(curve)):
            part = curve[max(0, k - self.window + 1) : k + 1]
            out.append(sum(part) / len(part))
        return out

    def episodes_to_converge(self, curve: Sequence[float], floor: float, target: float) -> int | None:
        """First episode (1-based) from which the smoothed curve stays at its final level."""
        if target == floor:
            raise ValueError("target and floor must differ")
        if any(not math.isfinite(r) for r in curve):
            raise ValueError("the learning curve contains NaN or infinite values")
        if len(curve) < self.window:
            return None
        smooth = self.moving_average(curve)
        final = smooth[-1]
        if (final - floor) / (target - floor) < self.min_fraction:
            return None
        band = self.tolerance * abs(target - floor)
        k = len(smooth)
        while k > 0 and abs(smooth[k - 1] - final) <= band:
            k -= 1
        return k + 1
