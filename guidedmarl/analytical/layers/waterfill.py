"""Exact structured solver of the separable allocation program ("water filling").

The KKT conditions of

    min sum_k x_k^2 / (2 c_k) + b_k x_k   s.t.  sum_k x_k = L,  lo_k <= x_k <= hi_k

give every coordinate in closed form from one scalar multiplier nu of the equality:

    x_k(nu) = clip(c_k (nu - b_k), lo_k, hi_k),

and ``g(nu) = sum_k x_k(nu)`` is continuous and nondecreasing, so nu is the root of
``g(nu) = L``. The layer works in two stages:

1. **Search (no autograd).** g is piecewise linear between the 2M breakpoints
   ``b_k + lo_k / c_k`` (coordinate k leaves its lower bound, the slope of g grows by c_k)
   and ``b_k + hi_k / c_k`` (it reaches its upper bound, the slope drops by c_k). The
   default search (``search="sort"``) sorts the breakpoints of every instance, evaluates g
   at all of them with cumulative sums, and interpolates nu on the segment where g crosses
   L: exact, O(M log M) and a fixed handful of tensor operations whatever the accuracy.
   ``search="bisection"`` halves a bracket ``iterations`` times instead (the original
   method, kept as a cross-check: 100 steps reach float64 resolution). The search runs in
   float64 (float32 inputs included) so the active set it finds is as accurate as possible.
2. **Differentiable recomputation.** From the search result, each coordinate is classified
   as free (``lo < c (nu - b) < hi`` strictly), at its lower or at its upper bound. On that
   fixed active set the solution is an explicit smooth function of the inputs,

       nu  = (L - sum_{k not in F} bound_k + sum_{k in F} c_k b_k) / sum_{k in F} c_k,
       x_k = c_k (nu - b_k)   (k in F),        x_k = bound_k   (k not in F),

   which is recomputed with autograd in the input dtype (rearranged around the searched
   nu to avoid cancellation, see ``_solve``). Its derivative is exactly the
   implicit-function derivative of the solution map wherever the active set is locally
   constant (no coordinate exactly at a breakpoint), so ``backward`` costs one pass over
   ``[B, M]`` and needs no linear solve.

Conventions at nonsmooth points (the solution map is only piecewise smooth):

* A coordinate exactly at a breakpoint (``c (nu - b)`` equal to a bound) is treated as at
  its bound: the returned gradient is the one-sided derivative for that active set.
* A fixed coordinate (``lo_k == hi_k``) is never free; its derivative 1 goes to ``upper``
  if ``c_k (nu - b_k) >= hi_k`` and to ``lower`` otherwise (only their sum is defined).
* **Empty free set.** When every coordinate sits at a bound (for instance ``L = sum lo``,
  ``L = sum hi``, or all ``lo == hi``), x is returned as the bounds, with derivative 1
  with respect to its own bound and **0 with respect to c, b and L**. The derivative with
  respect to L is undefined there (the solution map has a kink); 0 is the subgradient that
  keeps every coordinate on its bound and never produces NaN or inf.
"""

from __future__ import annotations

import torch
from torch import Tensor

from guidedmarl.analytical.layers.allocation import AllocationLayer, register_allocation_layer

__all__ = ["WaterFillingLayer"]


class WaterFillingLayer(AllocationLayer):
    """Exact, batched, autograd-differentiable solver of the separable allocation program.

    No Python loop runs over batch entries or variables: the forward pass costs
    ``O(B * M log M)`` (sort) or ``O(iterations * B * M)`` (bisection), the backward pass
    ``O(B * M)``.

    Args:
        search: ``"sort"`` (exact breakpoint search, default) or ``"bisection"``.
        iterations: bisection steps (``search="bisection"`` only). Each step halves the
            bracket; 100 reaches float64 resolution for brackets up to ~1e14 times
            larger than |nu|. Must be >= 1.
    """

    def __init__(self, search: str = "sort", iterations: int = 100) -> None:
        super().__init__()
        if search not in ("sort", "bisection"):
            raise ValueError(f"search must be 'sort' or 'bisection', got {search!r}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.search = search
        self.iterations = int(iterations)

    def extra_repr(self) -> str:
        """Shown by ``print(layer)``."""
        return f"search={self.search!r}" + (f", iterations={self.iterations}" if self.search == "bisection" else "")

    @torch.no_grad()
    def _sorted_breakpoint_multiplier(
        self, c: Tensor, b: Tensor, total: Tensor, lower: Tensor, upper: Tensor
    ) -> Tensor:
        """Exact nu with ``sum_k clip(c_k (nu - b_k), lo_k, hi_k) = L``; returns ``[B, 1]``.

        With the 2M breakpoints sorted, p_1 <= ... <= p_2M, and s_j the slope of g on
        (p_j, p_j+1) (the sum of c_k over coordinates strictly between their bounds),
        g(p_j) = sum lo + sum_{i<j} s_i (p_i+1 - p_i). The first breakpoint with
        g(p_j) >= L closes the segment holding the root, where g is linear.
        """
        points = torch.cat([b + lower / c, b + upper / c], dim=-1)  # [B, 2M]
        slope_change = torch.cat([c, -c], dim=-1)
        points, order = points.sort(dim=-1)
        slope = slope_change.gather(-1, order).cumsum(dim=-1)  # s_j on (p_j, p_j+1)
        rise = slope[..., :-1] * points.diff(dim=-1)  # g(p_j+1) - g(p_j)
        g_at = torch.cat([torch.zeros_like(rise[..., :1]), rise.cumsum(dim=-1)], dim=-1) + lower.sum(-1, keepdim=True)
        target = total.unsqueeze(-1)
        # segment (p_j, p_j+1) with g(p_j) < L <= g(p_j+1); clamp covers L outside [sum lo, sum hi]
        j = ((g_at < target).sum(dim=-1, keepdim=True) - 1).clamp(0, points.shape[-1] - 2)
        start, seg_slope = points.gather(-1, j), slope.gather(-1, j)
        excess = target - g_at.gather(-1, j)
        step = torch.where(seg_slope > 0, excess / torch.where(seg_slope > 0, seg_slope, 1.0), 0.0)
        return start + step.clamp_min(0.0)

    @torch.no_grad()
    def _search_multiplier(self, c: Tensor, b: Tensor, total: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        """Bisection for nu with ``sum_k clip(c_k (nu - b_k), lo_k, hi_k) = L``; returns ``[B, 1]``.

        Inputs are detached float tensors in the search dtype. The bracket endpoints are
        the smallest lower breakpoint (every coordinate at its lower bound, so the sum is
        ``<= L``) and the largest upper breakpoint (every coordinate at its upper bound,
        so the sum is ``>= L``); the invariant ``g(nu_lo) <= L <= g(nu_hi)`` is kept.
        """
        nu_lo = (b + lower / c).amin(dim=-1, keepdim=True)
        nu_hi = (b + upper / c).amax(dim=-1, keepdim=True)
        target = total.unsqueeze(-1)
        for _ in range(self.iterations):
            mid = 0.5 * (nu_lo + nu_hi)
            load = torch.minimum(torch.maximum(c * (mid - b), lower), upper).sum(dim=-1, keepdim=True)
            below = load < target
            nu_lo = torch.where(below, mid, nu_lo)
            nu_hi = torch.where(below, nu_hi, mid)
        return 0.5 * (nu_lo + nu_hi)

    def _solve(self, c: Tensor, b: Tensor, total: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        """Search the active set without autograd, then recompute x differentiably on it."""
        # float64 on CPU/CUDA; keep the input dtype where float64 is unavailable (MPS).
        search_dtype = c.dtype if c.device.type == "mps" else torch.float64
        with torch.no_grad():
            c64, b64, lo64, hi64 = (t.detach().to(search_dtype) for t in (c, b, lower, upper))
            search = self._sorted_breakpoint_multiplier if self.search == "sort" else self._search_multiplier
            nu = search(c64, b64, total.detach().to(search_dtype), lo64, hi64)
            unclipped = c64 * (nu - b64)
            free = (unclipped > lo64) & (unclipped < hi64)
            at_upper = (unclipped >= hi64) & ~free

        # Differentiable recomputation on the fixed active set, in the input dtype. With
        # any constant anchor a (here the searched nu, detached),
        #     nu - b_k = (a - b_k) + (L - sum_{not F} bound - sum_{F} c_j (a - b_j)) / sum_F c_j,
        # which is the closed form of the module docstring rearranged. Both gaps a - b_k
        # are small for free coordinates (often exact in floating point), so this avoids the
        # cancellation of c_k (nu - b_k) when c_k is large, which costs float32 accuracy.
        anchor = nu.to(c.dtype)
        gap = anchor - b
        bound = torch.where(at_upper, upper, lower)
        fixed_sum = torch.where(free, torch.zeros_like(bound), bound).sum(dim=-1)
        c_free = torch.where(free, c, torch.zeros_like(c))
        c_free_sum = c_free.sum(dim=-1)
        has_free = free.any(dim=-1)
        residual = total - fixed_sum - (c_free * gap).sum(dim=-1)
        # Safe denominator: instances without free coordinates never use the multiplier
        # (see the module docstring for the convention); the where() keeps gradients 0.
        denominator = torch.where(has_free, c_free_sum, torch.ones_like(c_free_sum))
        shift = torch.where(has_free, residual / denominator, torch.zeros_like(residual))
        return torch.where(free, c * (gap + shift.unsqueeze(-1)), bound)


register_allocation_layer("waterfill", WaterFillingLayer)
