"""The reference x_ref (the system optimum) and the user equilibrium of every scenario, cached by seed.

For the S new scenarios of a reset, in one batched call each (demand is exogenous, so this happens
once per scenario, never per step):

1. the user equilibrium (UE) on the agents' route sets, every OD pair free: the structured solver
   (:mod:`.assignment`). It is the ``user_equilibrium`` heuristic's target, and it fixes the route
   split of background OD pairs (those without packets, N < W);
2. the system optimum (SO) on the route sets, OD pairs with packets free, background held at its UE
   split: the reference. Backend (``reference_solver``): ``structured`` (gradient projection, warm
   started from the UE), ``cvxpylayers`` (:mod:`.layer`, Clarabel), or ``auto``: cvxpylayers up to
   ``auto_layer_max_paths`` route-set paths (Braess), structured above (Sioux Falls, Anaheim).

Both are checked: a structured solve whose relative gap stays above 1e-4 (or a layer solution that
misses the demand by more than 1e-6 relative) raises :class:`guidedmarl.errors.SolverError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from guidedmarl.analytical.scenario_cache import SolvedScenarioCache
from guidedmarl.errors import SolverError

from .assignment import solve
from .network import FloatArray
from .paths import PathSet
from .scenarios import scenario_demand
from .system import TrafficSystem

GAP_LIMIT = 1e-4

Backend = Literal["structured", "cvxpylayers"]


def choose_backend(system: TrafficSystem) -> Backend:
    s = system.settings
    if s.reference_solver != "auto":
        return s.reference_solver
    return "cvxpylayers" if system.paths.size <= s.auto_layer_max_paths else "structured"


@dataclass(frozen=True)
class PlannedScenario:
    """A scenario's demand ``[W]`` and its UE and SO path flows ``[P]`` / link flows ``[L]`` (veh/h)."""

    seed: int
    demand: FloatArray
    ue_path: FloatArray
    so_path: FloatArray
    ue_link: FloatArray
    so_link: FloatArray


def _checked(gap: FloatArray, what: str, seeds: list[int]) -> None:
    bad = np.nonzero(~(gap <= GAP_LIMIT))[0]
    if bad.size:
        raise SolverError(f"traffic reference: the {what} of scenario {seeds[bad[0]]} stopped at relative gap "
                          f"{gap[bad[0]]:.3g} > {GAP_LIMIT:g}; raise domain_config.reference_max_iter")


def _layer_so(system: TrafficSystem, demand: FloatArray, ue_path: FloatArray) -> FloatArray:
    from .layer import solve_with_layer

    controlled = system.packets.controlled
    keep = np.nonzero(controlled[system.path_od])[0]
    sub_od = np.nonzero(controlled)[0]
    sub_paths = PathSet.of(system.num_links, [[system.paths.paths[p] for p in keep if system.path_od[p] == w]
                                              for w in sub_od])
    incidence = system.paths.incidence()
    background = np.asarray((ue_path * ~controlled[system.path_od]) @ incidence)
    h_sub = solve_with_layer(system.links, sub_paths, demand[:, sub_od], background, "so")
    out = ue_path.copy()
    out[:, keep] = h_sub
    got = np.zeros_like(demand)
    np.add.at(got, (slice(None), system.path_od), out)
    if np.abs(got - demand).max() > 1e-6 * max(1.0, float(demand.max())):
        raise SolverError("traffic reference: the cvxpylayers system optimum does not meet the demand")
    return out


class ScenarioBank(SolvedScenarioCache["PlannedScenario"]):
    """Scenarios with their UE and SO flows, by seed, solved on demand (one batch per reset)."""

    def __init__(self, system: TrafficSystem) -> None:
        super().__init__(system.settings.cache_size)
        self.system = system
        self.backend = choose_backend(system)
        self._split: dict[str, FloatArray] = {}

    def _warm(self, kind: str, demand: FloatArray) -> FloatArray:
        """Starting path flows ``[S, P]``: the base demand's route split (solved once), scaled per OD pair."""
        sys_ = self.system
        if kind not in self._split:
            base = solve(sys_.links, sys_.paths, sys_.net.demand, kind, tol=sys_.settings.reference_tol,  # type: ignore[arg-type]
                         max_iter=sys_.settings.reference_max_iter)
            self._split[kind] = base.h[0] / sys_.net.demand[sys_.path_od]
        return self._split[kind][None] * demand[:, sys_.path_od]

    def solve(self, seeds: list[int]) -> list[PlannedScenario]:
        """Demand, UE and SO of ``seeds`` (not cached)."""
        sys_, s = self.system, self.system.settings
        demand = scenario_demand(sys_.net.demand, seeds, s.level_low, s.level_high, s.od_noise)
        ue = solve(sys_.links, sys_.paths, demand, "ue", h0=self._warm("ue", demand), tol=s.reference_tol,
                   max_iter=s.reference_max_iter)
        _checked(ue.gap, "user equilibrium", seeds)
        if self.backend == "cvxpylayers":
            so_path = _layer_so(sys_, demand, ue.h)
        else:
            start = np.where(sys_.packets.controlled[sys_.path_od], self._warm("so", demand), ue.h)
            so = solve(sys_.links, sys_.paths, demand, "so", h0=start, free=sys_.packets.controlled,
                       tol=s.reference_tol, max_iter=s.reference_max_iter)
            _checked(so.gap, "system optimum", seeds)
            so_path = so.h
        incidence = sys_.paths.incidence()
        return [PlannedScenario(seed, demand[k], ue.h[k], so_path[k], np.asarray(ue.h[k] @ incidence),
                                np.asarray(so_path[k] @ incidence)) for k, seed in enumerate(seeds)]

