"""Reference states satisfy the KKT conditions of their program, for both allocation layers.

Program (guidedmarl.analytical.layers.allocation):

    min_x sum_k x_k^2 / (2 c_k) + b_k x_k   s.t.  sum_k x_k = L,  lo_k <= x_k <= hi_k.

KKT (the program is strictly convex, so they characterise the unique solution): primal
feasibility, and one multiplier nu of the equality with

    x_k = clip(c_k (nu - b_k), lo_k, hi_k)   for every k,

which is stationarity x_k / c_k + b_k - nu - lambda_lo_k + lambda_hi_k = 0 with dual
feasibility lambda >= 0 and complementary slackness lambda_lo_k (x_k - lo_k) = 0,
lambda_hi_k (hi_k - x_k) = 0, where lambda_lo = (x/c + b - nu)^+, lambda_hi = (nu - x/c - b)^+.

The checker below finds nu from x alone (no solver): it evaluates the clip residual at every
candidate (b_k + x_k / c_k for each k, every breakpoint b_k + lo_k / c_k, b_k + hi_k / c_k,
and the midpoints between consecutive candidates) and keeps the best. If x solves the
program, a candidate has residual 0 (a free coordinate pins nu; with none free, nu may be
any point of an interval whose ends are breakpoints).

Gradients: the waterfill layer is gradchecked in float64 in
tests/analytical/test_layers.py::test_waterfill_gradcheck_all_inputs (not repeated here);
the cvxpylayers layer is gradchecked here on tiny instances (M <= 4, mode "dense").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from guidedmarl.analytical.layers import AllocationLayer, CvxpyAllocationLayer, WaterFillingLayer

torch.set_num_threads(1)

# cvxpylayers converts torch tensors with np.array(), which numpy 2 flags as deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

WATERFILL = WaterFillingLayer()
CVXPY = CvxpyAllocationLayer(mode="dense", n_jobs=1)  # SCS eps 1e-9 (the default)
CVXPY_TIGHT = CvxpyAllocationLayer(mode="dense", n_jobs=1, eps=1e-11)  # for finite differences

KKT_TOL = {"waterfill": 1e-10, "cvxpylayers": 1e-7}
"""Relative to 1 + max|x|. Waterfill is exact up to rounding (observed ~1e-15). SCS at
eps = 1e-9 has forward errors up to ~5e-10 (measured on M <= 4); the nu recovered from a free
coordinate inherits that error times c_max / c_min <= 25, hence 1e-7."""

Instance = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@st.composite
def instances(draw: st.DrawFn, max_size: int = 8, max_batch: int = 3, degenerate: bool = True) -> Instance:
    """Random feasible instances; with ``degenerate`` hypothesis may also pick totals at the
    ends (every coordinate at its lower or upper bound) and fixed coordinates (lo = hi)."""
    size, batch = draw(st.integers(1, max_size)), draw(st.integers(1, max_batch))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.floats(0.1, 4.0))
    c = np.exp(rng.uniform(np.log(0.2), np.log(5.0), (batch, size)))
    b = spread * rng.standard_normal((batch, size))
    lower = rng.uniform(-2.0, 0.5, (batch, size))
    upper = lower + rng.uniform(0.1, 2.0, (batch, size))
    if degenerate and draw(st.booleans()):
        fixed = rng.random((batch, size)) < 0.3
        upper = np.where(fixed, lower, upper)
    kinds = ["interior", "lowest", "highest"] if degenerate else ["interior"]
    kind = draw(st.sampled_from(kinds))
    fraction = {"interior": rng.uniform(0.02, 0.98, batch), "lowest": np.zeros(batch), "highest": np.ones(batch)}[kind]
    total = lower.sum(-1) + fraction * (upper - lower).sum(-1)
    return c, b, total, lower, upper


def as_tensors(instance: Instance, grad: bool = False) -> tuple[torch.Tensor, ...]:
    return tuple(torch.tensor(a, dtype=torch.float64, requires_grad=grad) for a in instance)


def clip_residual(
    nu: np.ndarray, c: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """max_k |x_k - clip(c_k (nu - b_k), lo_k, hi_k)| for every candidate nu, ``[candidates]``."""
    model = np.clip(c[None] * (nu[:, None] - b[None]), lo[None], hi[None])
    return np.abs(x[None] - model).max(axis=1)


def recover_multiplier(
    x: np.ndarray, c: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[float, float]:
    """(nu, residual) of the best candidate multiplier for one instance."""
    cands = np.unique(np.concatenate([b + x / c, b + lo / c, b + hi / c]))
    cands = np.concatenate([cands, 0.5 * (cands[1:] + cands[:-1])])
    residual = clip_residual(cands, c, b, lo, hi, x)
    best = int(np.argmin(residual))
    return float(cands[best]), float(residual[best])


def assert_kkt(x: np.ndarray, instance: Instance, tol: float) -> None:
    c, b, total, lo, hi = instance
    for i in range(c.shape[0]):
        scale = 1.0 + np.abs(x[i]).max() + np.abs(total[i])
        # primal feasibility
        assert abs(x[i].sum() - total[i]) <= tol * scale, ("sum", x[i].sum() - total[i])
        assert (x[i] >= lo[i] - tol * scale).all() and (x[i] <= hi[i] + tol * scale).all(), "box"
        # one multiplier nu: stationarity + complementary slackness in clip form
        nu, residual = recover_multiplier(x[i], c[i], b[i], lo[i], hi[i])
        assert residual <= tol * scale * 25, ("clip residual", residual)
        marginal = x[i] / c[i] + b[i]
        lam_lo = np.maximum(0.0, marginal - nu)  # needed where x is pushed up to lo
        lam_hi = np.maximum(0.0, nu - marginal)  # needed where x is held down at hi
        slack = max((lam_lo * (x[i] - lo[i])).max(), (lam_hi * (hi[i] - x[i])).max())
        assert slack <= tol * scale * 25 * (1.0 + np.abs(marginal).max() + abs(nu)), ("complementary slackness", slack)


@pytest.mark.parametrize(
    ("name", "max_size", "examples"),
    [("waterfill", 12, 60), ("cvxpylayers", 4, 25)],
)
def test_reference_satisfies_kkt(name: str, max_size: int, examples: int) -> None:
    layer: AllocationLayer = WATERFILL if name == "waterfill" else CVXPY

    @settings(max_examples=examples, deadline=None, database=None)
    @given(instance=instances(max_size=max_size))
    def check(instance: Instance) -> None:
        with torch.no_grad():
            x = layer(*as_tensors(instance)).numpy()
        assert_kkt(x, instance, KKT_TOL[name])

    check()


def test_kkt_checker_rejects_a_wrong_allocation() -> None:
    """The checker can fail: a feasible but suboptimal point (moving load between two free
    coordinates keeps the sum) has no common multiplier."""
    rng = np.random.default_rng(0)
    c = np.array([[1.0, 2.0, 0.5]])
    b = np.array([[0.1, -0.3, 0.2]])
    lo, hi = np.full((1, 3), -5.0), np.full((1, 3), 5.0)
    total = np.array([1.0])
    instance = (c, b, total, lo, hi)
    x = WATERFILL(*as_tensors(instance)).numpy()
    assert_kkt(x, instance, KKT_TOL["waterfill"])
    shift = np.array([[1e-3, -1e-3, 0.0]]) * (1 + rng.random())
    with pytest.raises(AssertionError, match="clip residual"):
        assert_kkt(x + shift, instance, KKT_TOL["cvxpylayers"])


def breakpoint_margin(instance: Instance) -> float:
    """Distance of every unclipped c (nu - b) to its bounds (0 without a free coordinate)."""
    c, b, _, lo, hi = instance
    x = WATERFILL(*as_tensors(instance)).numpy()
    margin = np.inf
    for i in range(c.shape[0]):
        free = (x[i] > lo[i]) & (x[i] < hi[i])
        if not free.any():
            return 0.0
        nu = np.mean(x[i, free] / c[i, free] + b[i, free])
        unclipped = c[i] * (nu - b[i])
        margin = min(margin, float(np.minimum(np.abs(unclipped - lo[i]), np.abs(unclipped - hi[i])).min()))
    return margin


@settings(max_examples=10, deadline=None, database=None)
@given(instance=instances(max_size=4, max_batch=2, degenerate=False))
def test_cvxpylayers_gradcheck_on_tiny_instances(instance: Instance) -> None:
    """torch.autograd.gradcheck of the cvxpylayers layer (diffcp "dense" backward) against
    central differences of its own forward, SCS eps = 1e-11, step 1e-4.

    Tolerance verified on 146 random instances (M <= 4, B <= 2, breakpoint margin > 1e-2):
    worst |analytic - numerical| 9.2e-8 at step 1e-4 (9.1e-6 at 1e-3, where the step is too
    coarse; 8.1e-7 at 1e-5, where solver noise / step dominates); atol 1e-6 leaves a 10x margin.
    The solution map is affine in (b, L, lo, hi) on a fixed active set, so the step costs no
    truncation error there; for c it is O(step^2).
    """
    assume(breakpoint_margin(instance) > 1e-2)  # active set constant within +-step
    inputs = as_tensors(instance, grad=True)
    assert torch.autograd.gradcheck(CVXPY_TIGHT, inputs, eps=1e-4, atol=1e-6, rtol=1e-5)
    # and the full Jacobian agrees with the exact (waterfill) one for all five inputs
    jac_cvx = torch.autograd.functional.jacobian(lambda *a: CVXPY_TIGHT(*a), inputs)
    jac_wf = torch.autograd.functional.jacobian(lambda *a: WATERFILL(*a), inputs)
    for got, want in zip(jac_cvx, jac_wf, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-8)
