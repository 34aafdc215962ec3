"""Daily demand scenarios: one seed gives one day of bus demand and its line-flow offsets.

The daily profile m(h) (hours h in [0, 24), periodic) is synthetic, shaped like a weekday
load curve: a night trough around 04:00, a daytime plateau and an evening peak around 19:00,

    s(h) = 0.5 (1 - cos(2 pi (h - 4) / 24)) + 0.35 exp(-(h - 19)^2 / (2 * 2^2)),
    m(h) = min_factor + (1 - min_factor) (s(h) - min s) / (max s - min s),

so m is in [min_factor, 1] with its peak at 1. Scenario noise (see ``LoadSettings``) comes
from ``numpy.random.default_rng(seed)``: the same seed gives the same day.

A scenario covers T + 1 periods: the episode's T, plus one more so that the last period's
observation can show the next period's demand (the forecast an operator has).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cases import FloatArray
from .system import PowerSystem

_TROUGH_HOUR = 4.0
_PEAK_HOUR = 19.0
_PEAK_WIDTH = 2.0
_PEAK_HEIGHT = 0.35


def _raw_shape(hours: FloatArray) -> FloatArray:
    h = np.mod(hours, 24.0)
    base = 0.5 * (1.0 - np.cos(2.0 * np.pi * (h - _TROUGH_HOUR) / 24.0))
    # distance to the evening peak on the 24-hour circle
    d = np.minimum(np.abs(h - _PEAK_HOUR), 24.0 - np.abs(h - _PEAK_HOUR))
    return base + _PEAK_HEIGHT * np.exp(-0.5 * (d / _PEAK_WIDTH) ** 2)


_GRID = _raw_shape(np.linspace(0.0, 24.0, 24 * 60, endpoint=False))
_SHAPE_MIN, _SHAPE_MAX = float(_GRID.min()), float(_GRID.max())


def daily_profile(hours: FloatArray, min_factor: float) -> FloatArray:
    """m(h): demand relative to the daily peak, in [min_factor, 1] (see the module docstring)."""
    s = (_raw_shape(np.asarray(hours, dtype=np.float64)) - _SHAPE_MIN) / (_SHAPE_MAX - _SHAPE_MIN)
    return min_factor + (1.0 - min_factor) * np.clip(s, 0.0, 1.0)


@dataclass(frozen=True)
class Scenario:
    """One day of exogenous data (T + 1 periods), per unit.

    Attributes:
        seed: the scenario seed.
        hours: ``[T + 1]`` clock time of each period (hours, may exceed 24).
        bus_demand: ``[T + 1, B]`` net demand per bus (demand minus fixed injections).
        demand: ``[T + 1]`` total net demand D_t (sum over buses), > 0.
        flow_offset: ``[T + 1, L_m]`` monitored-line flows caused by the demand (and phase
            shifters): the flows are ``ptdf_gen @ p + flow_offset[t]``.
    """

    seed: int
    hours: FloatArray
    bus_demand: FloatArray
    demand: FloatArray
    flow_offset: FloatArray


def _clipped_normal(rng: np.random.Generator, std: float, shape: tuple[int, ...]) -> FloatArray:
    return np.clip(rng.standard_normal(shape), -3.0, 3.0) * std


def demand_multipliers(system: PowerSystem, seed: int) -> tuple[FloatArray, FloatArray]:
    """(hours ``[T + 1]``, bus multipliers ``[T + 1, B]``) of scenario ``seed``."""
    s = system.settings
    ls = s.load
    t_count = s.horizon + 1
    rng = np.random.default_rng(seed)
    level = rng.uniform(ls.level_low, ls.level_high)
    phase = rng.uniform(-ls.phase_hours, ls.phase_hours)
    hours = s.start_hour + np.arange(t_count) * s.period_hours
    profile = daily_profile(hours + phase, ls.min_factor)
    innovations = _clipped_normal(rng, ls.aggregate_noise, (t_count,))
    rho = ls.noise_correlation
    noise = np.empty(t_count)
    noise[0] = innovations[0]
    for t in range(1, t_count):  # AR(1) over periods (scenario generation only, once per seed)
        noise[t] = rho * noise[t - 1] + np.sqrt(1.0 - rho * rho) * innovations[t]
    bus = _clipped_normal(rng, ls.bus_noise, (t_count, system.case.num_buses))
    multipliers = (level * profile * (1.0 + noise))[:, None] * (1.0 + bus)
    return hours, multipliers


def make_scenarios(system: PowerSystem, seeds: list[int]) -> list[Scenario]:
    """Scenarios for ``seeds``; the flow offsets of all of them come from one batched solve.

    Raises:
        ValueError: a period whose total net demand is not positive (names case, seed, period).
    """
    c = system.case
    hours_list, bus_list = [], []
    for seed in seeds:  # per scenario (a reset), never per step
        hours, mult = demand_multipliers(system, seed)
        hours_list.append(hours)
        bus_list.append(c.bus_demand[None, :] * mult - c.fixed_injection[None, :])
    bus_demand = np.stack(bus_list)  # [S, T + 1, B]
    demand = bus_demand.sum(-1)
    bad = np.argwhere(demand <= 0)
    if bad.size:
        k, t = (int(v) for v in bad[0])
        raise ValueError(
            f"case {c.name}, scenario seed {seeds[k]}, period {t}: total net demand "
            f"{demand[k, t] * c.base_mva:.6g} MW is not positive"
        )
    offsets = system.network.demand_flows(bus_demand)  # [S, T + 1, L_m], one batched solve
    return [
        Scenario(seed=seed, hours=hours_list[k], bus_demand=bus_demand[k], demand=demand[k], flow_offset=offsets[k])
        for k, seed in enumerate(seeds)
    ]
