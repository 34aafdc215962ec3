"""Demand scenarios: one seed scales and perturbs the network's base OD demand.

Scenario s's demand of OD pair w is

    d_w(s) = d_w^base * level * (1 + eps_w),   level ~ U[level_low, level_high],
    eps_w ~ N(0, od_noise^2) clipped at 3 standard deviations,

drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same demand. Demand is the
same on every day (period) of an episode, so a scenario's reference flows are solved once.
"""

from __future__ import annotations

import numpy as np

from .network import FloatArray


def scenario_demand(base: FloatArray, seeds: list[int], level_low: float, level_high: float,
                    od_noise: float) -> FloatArray:
    """Demand ``[S, W]`` (veh/h) of the scenarios ``seeds`` (see the module docstring)."""
    out = np.empty((len(seeds), base.shape[0]))
    for k, seed in enumerate(seeds):  # once per scenario, at reset
        rng = np.random.default_rng(seed)
        level = rng.uniform(level_low, level_high)
        eps = np.clip(rng.standard_normal(base.shape[0]), -3.0, 3.0) * od_noise
        out[k] = base * level * (1.0 + eps)
    return out
