"""The reference program as a differentiable convex layer (cvxpylayers, diffcp + SCS).

The program of :mod:`.reference` for a fixed horizon T is a DPP problem whose parameters
are the exogenous data of a scenario: the net demand D ``[T]`` and the demand flows f0
``[T, L]``; everything else (costs, limits, PTDF) is a constant of the case. A leading
batch dimension solves several scenarios in one call; gradients of the dispatch with
respect to D and f0 come from diffcp (``tests/domains/power/test_reference.py`` checks them
with ``torch.autograd.gradcheck`` in float64 on a tiny case).

Accuracy (see docs/notes on cvxpylayers in the project): SCS with ``eps_abs = eps_rel =
1e-9`` and a large iteration limit; the quadratic is written as one
``sum_squares(multiply(sqrt(q), P))``. The backward pass uses diffcp's exact ``dense`` mode.
Sizes: this builds T G + T L variables and about 2 T (G + L) inequalities, so it is meant
for small cases (``auto_layer_max_variables``); large cases use :mod:`.opf_lazy`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .cases import FloatArray
from .program import DispatchProgram, DispatchSolverError

if TYPE_CHECKING:
    from cvxpylayers.torch import CvxpyLayer

SCS_ARGS: dict[str, Any] = {"solve_method": "SCS", "eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000}
_ARRAY_COPY_WARNING = r"__array__ implementation doesn't accept a copy keyword"


class DispatchLayer(torch.nn.Module):
    """``(demand [S, T], offsets [S, T, L]) -> output [S, T, G]``, differentiable.

    Args:
        program: the case's reference program data.
        horizon: T.
    """

    def __init__(self, program: DispatchProgram, horizon: int) -> None:
        super().__init__()
        import cvxpy as cp
        from cvxpylayers.torch import CvxpyLayer

        self.program, self.horizon = program, horizon
        g, lines = program.num_generators, int(program.rate.shape[0])
        p = cp.Variable((horizon, g), name="p")
        demand = cp.Parameter(horizon, name="demand")
        params = [demand]
        root_q = np.tile(np.sqrt(program.quadratic), (horizon, 1))
        objective = cp.sum_squares(cp.multiply(root_q, p)) + cp.sum(p @ program.linear)  # type: ignore[attr-defined]
        constraints = [
            cp.sum(p, axis=1) == demand,  # type: ignore[attr-defined]
            p >= np.tile(program.pmin, (horizon, 1)),
            p <= np.tile(program.pmax, (horizon, 1)),
        ]
        if horizon > 1:
            step = p[1:] - p[:-1]
            ramp = np.tile(program.ramp, (horizon - 1, 1))
            constraints += [step <= ramp, step >= -ramp]
        if lines:
            offsets = cp.Parameter((horizon, lines), name="offsets")
            params.append(offsets)
            slack = cp.Variable((horizon, lines), nonneg=True, name="overload")
            flows = p @ program.ptdf.T + offsets
            rate = np.tile(program.rate, (horizon, 1))
            constraints += [flows <= rate + slack, -flows <= rate + slack]
            objective = objective + program.line_penalty * cp.sum(slack)  # type: ignore[attr-defined]
        problem = cp.Problem(cp.Minimize(objective), constraints)
        if not problem.is_dpp():  # pragma: no cover - guards the formulation above
            raise AssertionError("reference dispatch program is not DPP")
        self._has_lines = bool(lines)
        self.layer: CvxpyLayer = CvxpyLayer(problem, parameters=params, variables=[p])

    def forward(self, demand: Tensor, offsets: Tensor) -> Tensor:
        """Solve S scenarios (float64 on CPU); gradients flow to ``demand`` and ``offsets``."""
        params = [demand.to(torch.float64)]
        if self._has_lines:
            params.append(offsets.to(torch.float64))
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in params)
        args = dict(SCS_ARGS)
        if needs_grad:
            args["mode"] = "dense"  # exact derivative (diffcp's default lsqr is approximate)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_ARRAY_COPY_WARNING, category=DeprecationWarning)
                (p,) = self.layer(*params, solver_args=args)
        except Exception as exc:
            raise DispatchSolverError(
                f"case {self.program.case_name}: SCS failed on the reference program ({type(exc).__name__}: {exc})"
            ) from exc
        return p


_LAYERS: dict[tuple[int, int], DispatchLayer] = {}


def dispatch_layer(program: DispatchProgram, horizon: int) -> DispatchLayer:
    """The cached :class:`DispatchLayer` of ``program`` for ``horizon`` (built on first use)."""
    key = (id(program), horizon)
    layer = _LAYERS.get(key)
    if layer is None or layer.program is not program:
        layer = DispatchLayer(program, horizon)
        _LAYERS[key] = layer
    return layer


def solve_with_layer(program: DispatchProgram, demand: FloatArray, offsets: FloatArray) -> FloatArray:
    """Reference outputs ``[S, T, G]`` (no gradient) for ``demand [S, T]``, ``offsets [S, T, L]``."""
    layer = dispatch_layer(program, demand.shape[1])
    with torch.no_grad():
        p = layer(torch.from_numpy(np.ascontiguousarray(demand)), torch.from_numpy(np.ascontiguousarray(offsets)))
    return p.numpy().astype(np.float64)
