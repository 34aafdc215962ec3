"""The separable allocation program and the abstract differentiable layer that solves it.

Reference states of several domains are the solution of one small convex program, solved
independently for each of B instances (environments) with M variables each:

.. math::

    \\min_x \\; \\sum_k \\frac{x_k^2}{2 c_k} + b_k x_k
    \\quad \\text{s.t.} \\quad \\sum_k x_k = L, \\qquad lo_k \\le x_k \\le hi_k .

``c > 0`` are weights (a larger ``c_k`` makes coordinate k cheaper to load), ``b`` is a
linear cost, ``L`` the total to allocate and ``[lo, hi]`` the box of each coordinate. The
objective is strictly convex, so a feasible instance has exactly one solution ``x``.

:class:`AllocationLayer` fixes the tensor contract (``[B, M]`` inputs, ``[B]`` total,
``[B, M]`` output) and validates every call *before* solving, so that all backends fail
the same way on bad input: a misconfigured domain gets an error naming the offending
argument and batch entries instead of a NaN or an opaque solver status. Concrete
backends implement :meth:`AllocationLayer._solve` and are registered in
:data:`ALLOCATION_LAYERS` so configuration files can select them by name.
"""

from __future__ import annotations

from guidedmarl.errors import SolverError

import abc
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "ALLOCATION_LAYERS",
    "AllocationLayer",
    "InfeasibleProgramError",
    "make_allocation_layer",
    "register_allocation_layer",
]

#: How many offending batch indices an error message lists before truncating.
_MAX_LISTED_INDICES = 8


class InfeasibleProgramError(SolverError, ValueError):
    """Raised when ``sum(lower) > total`` or ``total > sum(upper)`` for some instance.

    Attributes:
        indices: the batch indices of all infeasible instances, in increasing order.
    """

    def __init__(self, message: str, indices: list[int]) -> None:
        super().__init__(message)
        self.indices = indices


def _format_indices(indices: list[int]) -> str:
    """Render the first few indices, noting how many were left out."""
    shown = ", ".join(str(i) for i in indices[:_MAX_LISTED_INDICES])
    more = len(indices) - _MAX_LISTED_INDICES
    return f"[{shown}{f', ... (+{more} more)' if more > 0 else ''}]"


def _bad_rows(mask: Tensor) -> list[int]:
    """Batch indices where ``mask`` (shape ``[B]`` or ``[B, M]``) has any True entry."""
    if mask.dim() > 1:
        mask = mask.any(dim=-1)
    return [int(i) for i in torch.nonzero(mask).flatten().tolist()]


class AllocationLayer(torch.nn.Module, abc.ABC):
    """Differentiable solver of the batched separable allocation program.

    Subclasses implement :meth:`_solve`; :meth:`forward` validates the inputs first (see
    :meth:`validate`), then delegates. The output keeps the dtype and device of the inputs
    and is differentiable with respect to every input that requires grad.

    Class attributes:
        feasibility_rtol_factor: the relative tolerance of the feasibility check is
            ``feasibility_rtol_factor * M * eps(dtype)``, a bound on the rounding error
            of a sum of M numbers, applied to ``|sum lower| + |sum upper| + |total|``.
    """

    feasibility_rtol_factor: float = 16.0

    def forward(self, c: Tensor, b: Tensor, total: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        """Solve every instance of the batch.

        Args:
            c: ``[B, M]`` positive weights.
            b: ``[B, M]`` linear costs.
            total: ``[B]`` amount to allocate, ``sum(lower) <= total <= sum(upper)``.
            lower: ``[B, M]`` lower bounds.
            upper: ``[B, M]`` upper bounds, ``lower <= upper``.

        Returns:
            ``[B, M]`` the optimal allocation ``x``.

        Raises:
            ValueError: inconsistent shapes, non-finite values, ``c <= 0`` or
                ``lower > upper``; the message names the argument and the batch entries.
            InfeasibleProgramError: some instance has no feasible point.
            TypeError: inputs that are not floating tensors of one dtype and device.
        """
        self.validate(c, b, total, lower, upper)
        return self._solve(c, b, total, lower, upper)

    @abc.abstractmethod
    def _solve(self, c: Tensor, b: Tensor, total: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        """Solve validated inputs (same contract as :meth:`forward`, no checks needed)."""

    @classmethod
    def validate(cls, c: Tensor, b: Tensor, total: Tensor, lower: Tensor, upper: Tensor) -> None:
        """Check the inputs of :meth:`forward` and raise a precise error on the first problem.

        Checks, in order: tensor type, dtype and device; shapes; finiteness; ``c > 0``;
        ``lower <= upper``; feasibility of the equality constraint. Each message names the
        argument and lists the first few offending batch indices. Runs without autograd.
        """
        named: dict[str, Any] = {"c": c, "b": b, "total": total, "lower": lower, "upper": upper}
        for name, value in named.items():
            if not isinstance(value, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            if not value.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        for name, value in named.items():
            if value.dtype != c.dtype:
                raise TypeError(f"{name} has dtype {value.dtype} but c has dtype {c.dtype}; use one dtype")
            if value.device != c.device:
                raise TypeError(f"{name} is on {value.device} but c is on {c.device}; use one device")

        if c.dim() != 2:
            raise ValueError(f"c must have shape [B, M], got {tuple(c.shape)}")
        batch, size = c.shape
        if batch < 1 or size < 1:
            raise ValueError(f"c must have B >= 1 instances and M >= 1 variables, got shape {tuple(c.shape)}")
        for name in ("b", "lower", "upper"):
            if named[name].shape != c.shape:
                raise ValueError(
                    f"{name} must have shape [B, M] = {tuple(c.shape)} (the shape of c), got {tuple(named[name].shape)}"
                )
        if total.shape != (batch,):
            raise ValueError(f"total must have shape [B] = ({batch},), got {tuple(total.shape)}")

        with torch.no_grad():
            for name, value in named.items():
                bad = _bad_rows(~torch.isfinite(value))
                if bad:
                    raise ValueError(
                        f"{name} has non-finite values (NaN or inf) in {len(bad)} instance(s), "
                        f"batch indices {_format_indices(bad)}"
                    )
            bad = _bad_rows(c <= 0)
            if bad:
                raise ValueError(
                    f"c must be strictly positive; {len(bad)} instance(s) have c <= 0, "
                    f"batch indices {_format_indices(bad)}"
                )
            bad = _bad_rows(lower > upper)
            if bad:
                raise ValueError(
                    f"lower must not exceed upper; {len(bad)} instance(s) have lower > upper, "
                    f"batch indices {_format_indices(bad)}"
                )

            low_sum = lower.sum(dim=-1)
            high_sum = upper.sum(dim=-1)
            scale = low_sum.abs() + high_sum.abs() + total.abs()
            tol = cls.feasibility_rtol_factor * size * torch.finfo(c.dtype).eps * scale
            too_small = total < low_sum - tol
            too_large = total > high_sum + tol
            bad = _bad_rows(too_small | too_large)
            if bad:
                first = bad[0]
                raise InfeasibleProgramError(
                    f"total is infeasible in {len(bad)} of {batch} instance(s), batch indices "
                    f"{_format_indices(bad)}: it must satisfy sum(lower) <= total <= sum(upper) "
                    f"(instance {first}: sum(lower)={low_sum[first].item():.6g}, "
                    f"total={total[first].item():.6g}, sum(upper)={high_sum[first].item():.6g})",
                    bad,
                )


#: Registered backends, by configuration name.
ALLOCATION_LAYERS: dict[str, type[AllocationLayer]] = {}


def register_allocation_layer(name: str, cls: type[AllocationLayer]) -> type[AllocationLayer]:
    """Make ``cls`` constructible through :func:`make_allocation_layer` under ``name``."""
    if name in ALLOCATION_LAYERS and ALLOCATION_LAYERS[name] is not cls:
        raise ValueError(f"allocation layer name {name!r} is already registered to {ALLOCATION_LAYERS[name]!r}")
    ALLOCATION_LAYERS[name] = cls
    return cls


def make_allocation_layer(name: str, **kwargs: Any) -> AllocationLayer:
    """Build the allocation layer registered under ``name`` with constructor ``kwargs``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    # Importing the package registers the built-in backends, even when only this module
    # was imported directly.
    import guidedmarl.analytical.layers  # noqa: F401

    try:
        cls = ALLOCATION_LAYERS[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in sorted(ALLOCATION_LAYERS))
        raise ValueError(f"unknown allocation layer {name!r}; valid names are {valid}") from None
    return cls(**kwargs)
