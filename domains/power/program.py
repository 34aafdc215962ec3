"""The reference program's data and its checks, shared by the reference and its solver backends.

:class:`DispatchProgram` holds what every scenario of a case shares (costs, limits, PTDF);
:func:`check_demand` and :func:`verify_dispatch` check a scenario's demand before a solve and
the solution after it; the errors name the case, scenario and period. The solver backends
(``opf_layer``, ``opf_lazy``) and :mod:`.reference` import this module, and it imports none of
them, so the three stay free of import cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guidedmarl.errors import SolverError

from .cases import FloatArray
from .system import PowerSystem

FEASIBILITY_TOL = 1e-6
"""Absolute tolerance (p.u.) of the checks of a solution against the hard constraints."""


class DispatchInfeasibleError(SolverError, ValueError):
    """The reference program has no feasible point (or a solver returned a point that is not)."""


class DispatchSolverError(SolverError):
    """A solver failed on a program that passed the feasibility checks."""


@dataclass(frozen=True)
class DispatchProgram:
    """Data of the reference program shared by all scenarios of a case (normalised units).

    Attributes:
        case_name: for error messages.
        quadratic, linear: ``[G]`` costs q / pi (per p.u.^2) and l / pi (per p.u.).
        pmin, pmax, ramp: ``[G]`` per unit (ramp per period).
        ptdf: ``[L, G]`` monitored lines' PTDF at the generator buses.
        rate: ``[L]`` line limits (p.u.).
        line_penalty: rho.
    """

    case_name: str
    quadratic: FloatArray
    linear: FloatArray
    pmin: FloatArray
    pmax: FloatArray
    ramp: FloatArray
    ptdf: FloatArray
    rate: FloatArray
    line_penalty: float

    @classmethod
    def of(cls, system: PowerSystem) -> DispatchProgram:
        c = system.case
        return cls(
            case_name=c.name,
            quadratic=c.cost_q / system.price,
            linear=c.cost_l / system.price,
            pmin=c.pmin,
            pmax=c.pmax,
            ramp=system.ramp,
            ptdf=system.network.ptdf_gen,
            rate=system.network.rate,
            line_penalty=system.settings.overload_weight,
        )

    @property
    def num_generators(self) -> int:
        return int(self.pmin.shape[0])

    def flows(self, p: FloatArray, offsets: FloatArray) -> FloatArray:
        """Line flows ``[..., T, L]`` of outputs ``[..., T, G]``."""
        return p @ self.ptdf.T + offsets

    def overload(self, p: FloatArray, offsets: FloatArray) -> FloatArray:
        """sum_l max(0, |f_l| - F_l) per period, ``[..., T]`` (p.u.)."""
        return np.maximum(np.abs(self.flows(p, offsets)) - self.rate, 0.0).sum(-1)


@dataclass(frozen=True)
class DispatchResult:
    """Reference dispatch of S scenarios: ``output [S, T, G]``, ``overload [S, T]`` (p.u.)."""

    output: FloatArray
    overload: FloatArray


def check_demand(program: DispatchProgram, demand: FloatArray, seeds: list[int]) -> None:
    """Raise :class:`DispatchInfeasibleError` if some period's demand cannot be met.

    Checks sum pmin <= D_t <= sum pmax for every period and |D_t - D_(t-1)| <= sum R (a
    necessary condition for the ramp limits).
    """
    lo, hi, ramp = program.pmin.sum(), program.pmax.sum(), program.ramp.sum()
    tol = FEASIBILITY_TOL * max(1.0, hi)
    bad = np.argwhere((demand < lo - tol) | (demand > hi + tol))
    if bad.size:
        k, t = (int(v) for v in bad[0])
        raise DispatchInfeasibleError(
            f"case {program.case_name}, scenario seed {seeds[k]}, period {t}: demand {demand[k, t]:.6g} p.u. is "
            f"outside the generation range [{lo:.6g}, {hi:.6g}] p.u.; change domain_config.load (level_low, "
            "level_high, min_factor)"
        )
    if demand.shape[1] > 1:
        step = np.abs(np.diff(demand, axis=1))
        bad = np.argwhere(step > ramp + tol)
        if bad.size:
            k, t = (int(v) for v in bad[0])
            raise DispatchInfeasibleError(
                f"case {program.case_name}, scenario seed {seeds[k]}, period {t + 1}: demand changes by "
                f"{step[k, t]:.6g} p.u. but all generators together can ramp by {ramp:.6g} p.u.; raise "
                "domain_config.ramp_per_hour"
            )


def verify_dispatch(program: DispatchProgram, p: FloatArray, demand: FloatArray, seeds: list[int]) -> None:
    """Raise :class:`DispatchInfeasibleError` if ``p`` ``[S, T, G]`` violates a hard constraint."""
    tol = FEASIBILITY_TOL * np.maximum(1.0, np.abs(demand))  # [S, T]
    checks: list[tuple[str, FloatArray]] = [
        ("power balance", np.abs(p.sum(-1) - demand) - tol),
        ("lower generator limit", (program.pmin - p).max(-1) - FEASIBILITY_TOL),
        ("upper generator limit", (p - program.pmax).max(-1) - FEASIBILITY_TOL),
    ]
    if p.shape[1] > 1:
        ramp_excess = (np.abs(np.diff(p, axis=1)) - program.ramp).max(-1) - FEASIBILITY_TOL
        checks.append(("ramp limit", np.concatenate([np.full_like(ramp_excess[:, :1], -1.0), ramp_excess], 1)))
    for what, excess in checks:
        bad = np.argwhere(~(excess <= 0))  # NaN counts as a violation
        if bad.size:
            k, t = (int(v) for v in bad[0])
            raise DispatchInfeasibleError(
                f"case {program.case_name}, scenario seed {seeds[k]}, period {t}: the reference solver returned a "
                f"dispatch that violates the {what} by {excess[k, t]:.3g} p.u. beyond tolerance"
            )
