"""The route-set assignment program as a differentiable convex layer (cvxpylayers, diffcp).

Program, for one scenario, over the path flows of the agents' route sets (the same program the
structured solver :mod:`.assignment` solves without column generation), flows scaled by capacity:

    minimise    sum_l (t0_l C_l / (t_bar kappa)) (y_l + beta_l b_l y_l^(p_l + 1))
    subject to  sum_{p in w} f_p = d_w / kappa    (every OD pair w),    f >= 0,
                y_l = (kappa / C_l) (Delta^T f)_l + y_bg,l,

with f = h / kappa the path flows in units of kappa (the mean link capacity), y the link flows over
capacity, y_bg the background traffic over capacity, t_bar the mean free-flow time, and beta = 1 for
the system optimum (the objective is TSTT / (t_bar kappa)) or 1 / (p + 1) for the user equilibrium
(Beckmann's potential). Scaling matters: unscaled BPR terms (v^5 with v ~ 10^4) make conic solvers
stop "optimal_inaccurate" far from the optimum (docs/domains/traffic.md).

The parameters are the exogenous data of a scenario: demand d ``[W]`` and background y_bg ``[L]``.
A leading batch dimension solves several scenarios in one call. Each BPR power term is written as
``power(multiply(c^(1/q), y), q)`` (one weight inside, q = p + 1), or as one ``sum_squares`` for
q = 2, the forms cvxpylayers differentiates accurately. Solver: Clarabel (interior point, accurate
to about 1e-8 here); SCS at eps 1e-9 as the fallback the power domain uses. Meant for small route
sets (Braess, Sioux Falls with a few thousand paths at most): the structured solver is exact and
faster at every size, and is the default for the two real networks.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .costs import Kind, LinkData
from .paths import PathSet

CLARABEL_ARGS: dict[str, Any] = {"solve_method": "Clarabel", "tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10,
                                 "tol_feas": 1e-10, "max_iter": 500}
SCS_ARGS: dict[str, Any] = {"solve_method": "SCS", "eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000}
_ARRAY_COPY_WARNING = r"__array__ implementation doesn't accept a copy keyword"


class LayerSolverError(RuntimeError):
    """The conic solver failed on the route-set program."""


class RouteSetLayer(torch.nn.Module):
    """``(demand [S, W], background [S, L]) -> path flows [S, P]`` (veh/h), differentiable.

    Args:
        links: the network's BPR data.
        paths: the route sets (fixed).
        kind: ``"so"`` (TSTT) or ``"ue"`` (Beckmann).
        solver: ``"clarabel"`` or ``"scs"``.
    """

    def __init__(self, links: LinkData, paths: PathSet, kind: Kind, solver: str = "clarabel") -> None:
        super().__init__()
        import cvxpy as cp
        from cvxpylayers.torch import CvxpyLayer

        self.kappa = float(links.capacity.mean())
        self.t_bar = float(links.t0.mean())
        self.solver_args = CLARABEL_ARGS if solver == "clarabel" else SCS_ARGS
        num_od, num_links = paths.num_od, paths.num_links
        f = cp.Variable(paths.size, nonneg=True, name="path_flow")
        demand = cp.Parameter(num_od, nonneg=True, name="demand")
        background = cp.Parameter(num_links, nonneg=True, name="background")
        od = paths.od_array()
        assign = np.zeros((num_od, paths.size))
        assign[od, np.arange(paths.size)] = 1.0
        scale = self.kappa / links.capacity
        incidence = paths.incidence().T.multiply(scale[:, None]).tocsr()  # [L, P], scaled to y
        y = incidence @ f + background
        weight = links.t0 * links.capacity / (self.t_bar * self.kappa)
        beta = np.ones(num_links) if kind == "so" else 1.0 / (links.power + 1.0)
        coef = weight * beta * links.b
        objective = weight @ y
        for q in np.unique(links.power + 1.0):
            sel = np.nonzero(links.power + 1.0 == q)[0]
            root = coef[sel] ** (1.0 / q)
            term = cp.multiply(root, y[sel])
            objective = objective + (cp.sum_squares(term) if q == 2 else cp.sum(cp.power(term, float(q))))
        problem = cp.Problem(cp.Minimize(objective), [assign @ f == demand])
        if not problem.is_dpp():  # pragma: no cover - guards the formulation above
            raise AssertionError("route-set program is not DPP")
        self.layer = CvxpyLayer(problem, parameters=[demand, background], variables=[f])
        self.capacity = links.capacity

    def forward(self, demand: Tensor, background: Tensor) -> Tensor:
        """Solve S scenarios; ``demand [S, W]`` and ``background [S, L]`` in veh/h; float64 out."""
        d = demand.to(torch.float64) / self.kappa
        bg = background.to(torch.float64) / torch.as_tensor(self.capacity)
        args = dict(self.solver_args)
        if torch.is_grad_enabled() and (d.requires_grad or bg.requires_grad):
            args["mode"] = "dense"  # exact derivative (diffcp's default lsqr is approximate)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_ARRAY_COPY_WARNING, category=DeprecationWarning)
                (f,) = self.layer(d, bg, solver_args=args)
        except Exception as exc:
            raise LayerSolverError(f"cvxpylayers failed on the route-set program ({type(exc).__name__}: {exc})") from exc
        return f.clamp_min(0.0) * self.kappa


def solve_with_layer(links: LinkData, paths: PathSet, demand: np.ndarray, background: np.ndarray, kind: Kind,
                     solver: str = "clarabel") -> np.ndarray:
    """Path flows ``[S, P]`` (veh/h, no gradient) of the route-set program for ``demand [S, W]``."""
    layer = RouteSetLayer(links, paths, kind, solver)
    with torch.no_grad():
        h = layer(torch.from_numpy(np.atleast_2d(demand)), torch.from_numpy(np.atleast_2d(background)))
    return h.numpy()
