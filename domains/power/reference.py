"""The reference dispatch x_ref: a multi-period DC optimal power flow per scenario.

Program (per scenario, periods t = 0..T-1, generators i, monitored lines l; per unit,
costs divided by the case price pi so the objective is O(demand)):

    minimise    sum_t [ sum_i (q_i p_ti^2 + l_i p_ti) / pi  +  rho sum_l s_tl ]
    subject to  sum_i p_ti = D_t                                   (power balance)
                pmin_i <= p_ti <= pmax_i                            (generator limits)
                |p_ti - p_(t-1)i| <= R_i                 (t >= 1)   (ramp limits)
                |PTDF_l p_t + f0_tl| <= F_l + s_tl,  s_tl >= 0      (line limits, soft)

with q, l the generator cost coefficients, D_t the scenario's net demand, f0 its demand
flows, F the line limits and R the ramp limit per period. Line limits are soft with the
reward's overload weight as penalty, rho = lambda_f (``overload_weight``, default 50, in
units of pi per p.u.), so that the objective is exactly minus the episode return times
D_nom / dh (up to constant costs) of a balanced dispatch: the reference is the best
balanced, ramp-feasible dispatch of the day for the reward the agents get. It is also an exact penalty: the
solution equals the hard-constrained DC-OPF whenever that is feasible and rho exceeds every
line's shadow price over pi (at most about 20 on the cases checked), and the program stays
feasible otherwise (the overload left, sum_l s_tl, is reported and shown in the
environment's ``reference_overload``). Balance,
generator and ramp constraints are hard: demand outside [sum pmin, sum pmax] or total
demand steps larger than sum R raise :class:`DispatchInfeasibleError` naming the case,
scenario and period; every solution is checked against all hard constraints afterwards.

Demand is exogenous, so the program is solved once per scenario for the whole horizon (one
batched call over the new scenarios of a reset) and cached with the scenario
(:class:`ScenarioBank`). Backends: ``opf_layer`` (cvxpylayers, differentiable; small cases)
and ``opf_lazy`` (HiGHS or Clarabel with line constraint generation; any size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from guidedmarl.analytical.scenario_cache import SolvedScenarioCache

from .cases import FloatArray
from .program import (
    FEASIBILITY_TOL,
    DispatchInfeasibleError,
    DispatchProgram,
    DispatchResult,
    DispatchSolverError,
    check_demand,
    verify_dispatch,
)
from .scenarios import Scenario, make_scenarios
from .system import PowerSystem

__all__ = [
    "FEASIBILITY_TOL",
    "DispatchInfeasibleError",
    "DispatchProgram",
    "DispatchResult",
    "DispatchSolverError",
    "PlannedScenario",
    "ScenarioBank",
    "check_demand",
    "choose_backend",
    "solve_dispatch",
    "verify_dispatch",
]

Backend = Literal["cvxpylayers", "sparse"]


def choose_backend(system: PowerSystem) -> Backend:
    """The backend for ``reference_solver`` (``auto``: cvxpylayers for G x T up to a bound)."""
    s = system.settings
    if s.reference_solver != "auto":
        return s.reference_solver
    return "cvxpylayers" if system.num_generators * s.horizon <= s.auto_layer_max_variables else "sparse"


def solve_dispatch(
    program: DispatchProgram, demand: FloatArray, offsets: FloatArray, seeds: list[int], backend: Backend
) -> DispatchResult:
    """Reference dispatch of S scenarios: ``demand [S, T]``, ``offsets [S, T, L]``.

    Checks the demand first, solves with ``backend``, verifies the result.
    """
    check_demand(program, demand, seeds)
    if backend == "cvxpylayers":
        from .opf_layer import solve_with_layer

        p = solve_with_layer(program, demand, offsets)
    else:
        from .opf_lazy import solve_lazy

        p = solve_lazy(program, demand, offsets, seeds)
    verify_dispatch(program, p, demand, seeds)
    return DispatchResult(output=p, overload=program.overload(p, offsets))


@dataclass(frozen=True)
class PlannedScenario:
    """A scenario with its reference dispatch for the T periods of an episode.

    Attributes:
        scenario: the demand data (T + 1 periods).
        reference: ``[T, G]`` reference outputs (p.u.).
        reference_overload: ``[T]`` line overload left in the reference (p.u.; 0 when the
            line limits can be met).
    """

    scenario: Scenario
    reference: FloatArray
    reference_overload: FloatArray


class ScenarioBank(SolvedScenarioCache["PlannedScenario"]):
    """Scenarios and their reference dispatch, by seed, generated and solved on demand.

    Missing seeds of a request are generated and solved together (one batched reference
    call); the most recently used ``capacity`` scenarios are kept.
    """

    def __init__(self, system: PowerSystem, capacity: int | None = None) -> None:
        super().__init__(capacity or system.settings.cache_size)
        self.system = system
        self.program = DispatchProgram.of(system)
        self.backend = choose_backend(system)

    def solve(self, seeds: list[int]) -> list[PlannedScenario]:
        """Generate the scenarios of ``seeds`` and solve their reference dispatch in one call."""
        horizon = self.system.settings.horizon
        scenarios = make_scenarios(self.system, seeds)
        demand = np.stack([sc.demand[:horizon] for sc in scenarios])
        offsets = np.stack([sc.flow_offset[:horizon] for sc in scenarios])
        result = solve_dispatch(self.program, demand, offsets, seeds, self.backend)
        return [PlannedScenario(sc, result.output[k], result.overload[k]) for k, sc in enumerate(scenarios)]
