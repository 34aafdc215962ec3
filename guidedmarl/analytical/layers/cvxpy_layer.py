"""Generic backend of the allocation program: ``cvxpylayers`` + ``diffcp`` + SCS.

This backend exists as an independent reference for :class:`WaterFillingLayer` and as a
template for reference-state programs that have no closed-form structure. It solves the
same program through a general conic solver and differentiates the conic KKT system, so
it is much slower (one SCS solve per instance, threads over the batch) and its accuracy is
set by solver tolerances.

Formulation. The program must be DPP (disciplined parametrized programming) for
``cvxpylayers``; it is written as

    minimise   || s * x ||_2^2 + b^T x     with the parameter s = 1 / sqrt(2 c),
    subject to sum(x) = L,  x >= lo,  x <= hi,

i.e. the quadratic is a single ``cp.sum_squares(cp.multiply(s, x))``. (The per-element
form ``cp.sum(cp.multiply(w, cp.square(x)))`` was reported to give 77-87% gradient error
with diffcp in an earlier measurement on this machine; with ``w`` declared ``nonneg`` and
the tolerances below it measured as accurate as this form, but the single-norm form is
kept as the safe one.) The map c -> s is applied in torch, so gradients with respect to c
flow through it.

Accuracy defaults (measured against :class:`WaterFillingLayer` in float64, relative
max-errors, random instances with about a third of the coordinates free):

* forward with SCS ``eps_abs = eps_rel = 1e-9``: 1e-12 .. 1e-8 (M = 10 .. 750);
* backward ``mode="dense"`` (exact linear solve, cubic in M): 1e-11 .. 4e-9 for M <= 200,
  but 0.2 s at M = 200 and ~10 s at M = 750;
* backward ``mode="lsmr"`` (scipy LSMR, tolerance 1e-10, iterative): 1e-10 .. 2e-6 for
  M = 10 .. 750, about as fast as lsqr (~0.07 s of backward at M = 750, B = 2);
* backward ``mode="lsqr"`` (diffcp's default, iterative): 1e-7 .. 2e-4; not recommended.

The default ``mode="auto"`` uses ``dense`` up to ``dense_max_size`` variables (100) and
``lsmr`` above.

Pitfalls handled here: diffcp's solve-only path (used by cvxpylayers when no gradient is
needed) rejects the derivative options ``mode`` and ``n_jobs_backward`` with a TypeError,
so they are passed only when a gradient will be taken; the solver returns float64 on CPU,
so the result is cast back to the input dtype and device; one failed instance fails the
whole batch, so inputs are validated first and any remaining failure is re-raised as
:class:`AllocationSolverError`. Double backward is not supported (diffcp's backward is
``once_differentiable``).
"""

from __future__ import annotations

from guidedmarl.errors import SolverError

import warnings
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from guidedmarl.analytical.layers.allocation import AllocationLayer, register_allocation_layer

if TYPE_CHECKING:
    from cvxpylayers.torch.cvxpylayer import CvxpyLayer

__all__ = ["AllocationSolverError", "CvxpyAllocationLayer"]

DerivativeMode = Literal["auto", "dense", "lsmr", "lsqr"]
SolveMethod = Literal["SCS", "Clarabel"]

_MODES: tuple[str, ...] = ("auto", "dense", "lsmr", "lsqr")
_SOLVE_METHODS: tuple[str, ...] = ("SCS", "Clarabel")
# numpy 2 deprecation raised inside cvxpylayers when it converts torch tensors; harmless.
_ARRAY_COPY_WARNING = r"__array__ implementation doesn't accept a copy keyword"


class AllocationSolverError(SolverError):
    """The conic solver failed on inputs that passed validation (e.g. iteration limit)."""


class CvxpyAllocationLayer(AllocationLayer):
    """Allocation layer backed by :class:`cvxpylayers.torch.CvxpyLayer` (diffcp + SCS).

    The number of variables M is fixed when a ``CvxpyLayer`` is built, so one is built
    lazily for each M seen and cached on the instance. The cache is not part of the
    module's ``state_dict`` and is dropped on pickling/deep-copying (it is rebuilt on
    demand). Computation always happens on CPU in float64; the output is returned in the
    input dtype and device.

    Args:
        eps: solver tolerance. For SCS, ``eps_abs = eps_rel = eps``; for Clarabel,
            ``tol_gap_abs = tol_gap_rel = tol_feas = eps``. Default 1e-9 (see the module
            docstring for the measured accuracy).
        max_iters: solver iteration limit (SCS ``max_iters``, Clarabel ``max_iter``).
            SCS needs a few thousand iterations at eps=1e-9; the default 100 000 is a
            safety margin, not a typical count.
        mode: diffcp derivative mode: ``"dense"`` (exact, cubic cost), ``"lsmr"`` or
            ``"lsqr"`` (iterative, approximate), or ``"auto"`` (dense up to
            ``dense_max_size`` variables, lsmr above).
        dense_max_size: largest M for which ``mode="auto"`` selects ``"dense"``.
        solve_method: ``"SCS"`` (default, most accurate here) or ``"Clarabel"`` (faster
            for large M, but measured forward and gradient relative errors of 1e-6 .. 2e-5
            on this conic formulation, whatever ``eps``).
        n_jobs: threads diffcp uses over the batch, forward and backward (-1: all cores).
        solver_args: extra keyword arguments for the solver, applied last (override the
            settings above).
    """

    def __init__(
        self,
        eps: float = 1e-9,
        max_iters: int = 100_000,
        mode: DerivativeMode = "auto",
        dense_max_size: int = 100,
        solve_method: SolveMethod = "SCS",
        n_jobs: int = -1,
        solver_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        if max_iters < 1:
            raise ValueError(f"max_iters must be >= 1, got {max_iters}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if solve_method not in _SOLVE_METHODS:
            raise ValueError(f"solve_method must be one of {_SOLVE_METHODS}, got {solve_method!r}")
        if n_jobs == 0 or n_jobs < -1:
            raise ValueError(f"n_jobs must be -1 or a positive integer, got {n_jobs}")
        self.eps = float(eps)
        self.max_iters = int(max_iters)
        self.mode: DerivativeMode = mode
        self.dense_max_size = int(dense_max_size)
        self.solve_method: SolveMethod = solve_method
        self.n_jobs = int(n_jobs)
        self.extra_solver_args: dict[str, Any] = dict(solver_args or {})
        self._layers: dict[int, CvxpyLayer] = {}

    def extra_repr(self) -> str:
        """Shown by ``print(layer)``."""
        return (
            f"eps={self.eps:g}, max_iters={self.max_iters}, mode={self.mode!r}, "
            f"dense_max_size={self.dense_max_size}, solve_method={self.solve_method!r}, n_jobs={self.n_jobs}"
        )

    def __getstate__(self) -> dict[str, Any]:
        """Drop the cache of cvxpy problems (not picklable, cheap to rebuild)."""
        state: dict[str, Any] = super().__getstate__()  # type: ignore[no-untyped-call]
        state["_layers"] = {}
        return state

    def derivative_mode(self, size: int) -> str:
        """The diffcp derivative mode used for M = ``size`` variables."""
        if self.mode == "auto":
            return "dense" if size <= self.dense_max_size else "lsmr"
        return self.mode

    def solver_args(self, size: int, needs_grad: bool) -> dict[str, Any]:
        """Keyword arguments for diffcp for one call.

        ``mode`` and ``n_jobs_backward`` are accepted only by diffcp's solve-and-derivative
        path; cvxpylayers takes the solve-only path (which raises TypeError on them) when
        no input requires grad or grad mode is off, so they are left out then.
        """
        args: dict[str, Any] = {"solve_method": self.solve_method, "n_jobs_forward": self.n_jobs}
        if self.solve_method == "SCS":
            args.update(eps_abs=self.eps, eps_rel=self.eps, max_iters=self.max_iters)
        else:
            args.update(tol_gap_abs=self.eps, tol_gap_rel=self.eps, tol_feas=self.eps, max_iter=self.max_iters)
        if needs_grad:
            args.update(mode=self.derivative_mode(size), n_jobs_backward=self.n_jobs)
        args.update(self.extra_solver_args)
        return args

    def _layer(self, size: int) -> CvxpyLayer:
        """The cached ``CvxpyLayer`` for M = ``size``, built on first use."""
        layer = self._layers.get(size)
        if layer is None:
            import cvxpy as cp
            from cvxpylayers.torch.cvxpylayer import CvxpyLayer

            x = cp.Variable(size, name="x")
            scale = cp.Parameter(size, name="s")  # s = 1 / sqrt(2 c)
            linear = cp.Parameter(size, name="b")
            total = cp.Parameter(name="L")
            lower = cp.Parameter(size, name="lower")
            upper = cp.Parameter(size, name="upper")
            # cvxpy re-exports its atoms implicitly, which strict mypy does not see.
            quadratic = cp.sum_squares(cp.multiply(scale, x))  # type: ignore[attr-defined]
            objective = cp.Minimize(quadratic + linear @ x)
            equality = cp.sum(x) == total  # type: ignore[attr-defined]
            problem = cp.Problem(objective, [equality, x >= lower, x <= upper])
            if not problem.is_dpp():  # pragma: no cover - guards the formulation above
                raise AssertionError("allocation program is not DPP")
            layer = CvxpyLayer(problem, parameters=[scale, linear, total, lower, upper], variables=[x])
            self._layers[size] = layer
        return layer

    def _solve(self, c: Tensor, b: Tensor, total: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        """Solve in float64 on CPU through cvxpylayers; return in the input dtype/device."""
        size = c.shape[-1]
        layer = self._layer(size)
        cpu = torch.device("cpu")
        c64, b64, total64, lower64, upper64 = (
            t.to(device=cpu, dtype=torch.float64) for t in (c, b, total, lower, upper)
        )
        params = (torch.rsqrt(2.0 * c64), b64, total64, lower64, upper64)
        # Same condition cvxpylayers uses to choose between its two diffcp paths.
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_ARRAY_COPY_WARNING, category=DeprecationWarning)
                solution: tuple[Tensor, ...] = layer(*params, solver_args=self.solver_args(size, needs_grad))
        except Exception as exc:
            import diffcp

            if isinstance(exc, (diffcp.SolverError, RuntimeError, ValueError, ArithmeticError)):
                raise AllocationSolverError(
                    f"{self.solve_method} failed on an allocation batch of shape {tuple(c.shape)} "
                    f"that passed validation ({type(exc).__name__}: {exc}); try a looser eps or a "
                    f"larger max_iters"
                ) from exc
            raise
        return solution[0].to(dtype=c.dtype, device=c.device)


register_allocation_layer("cvxpylayers", CvxpyAllocationLayer)
