"""Tests of the differentiable allocation layers (``guidedmarl.analytical.layers``).

References: a direct, independent cvxpy solve of each instance with Clarabel (forward),
KKT conditions (waterfill), ``torch.autograd.gradcheck`` (waterfill gradients) and central
finite differences of the direct solve (cvxpylayers gradients).

Verified tolerances (relative to the largest reference magnitude, float64):

* waterfill forward vs direct Clarabel solve: 1e-6 (observed <= 1.1e-9, limited by Clarabel);
* cvxpylayers forward (SCS eps=1e-9) vs direct solve: 1e-6 (observed <= 3.2e-9);
* cvxpylayers gradient (mode "dense") vs finite differences (h=1e-5): 1e-6 of the largest
  derivative (observed <= 5e-9);
* waterfill vs cvxpylayers (property test): forward 1e-6, gradients wrt b and L 1e-5 of the
  largest derivative (observed <= 6e-9 and <= 1.4e-8 over 300 random instances).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

try:
    import guidedmarl.analytical.layers  # noqa: F401
except ModuleNotFoundError:  # package not installed and --import-mode=importlib: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from guidedmarl.analytical.layers import (
    ALLOCATION_LAYERS,
    AllocationLayer,
    AllocationSolverError,
    CvxpyAllocationLayer,
    InfeasibleProgramError,
    WaterFillingLayer,
    make_allocation_layer,
)

# cvxpylayers converts torch tensors with np.array(), which numpy 2 flags as deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

Instance = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# One instance of each layer for the whole module: the cvxpylayers backend caches one
# compiled problem per M, which keeps the property test fast.
WATERFILL = WaterFillingLayer()
CVXPY = CvxpyAllocationLayer()


def random_instance(
    rng: np.random.Generator, batch: int, size: int, spread: float = 2.0, fraction: tuple[float, float] = (0.15, 0.85)
) -> Instance:
    """Random feasible instance ``(c, b, total, lower, upper)`` as float64 numpy arrays.

    ``spread`` scales the linear costs relative to the box widths: around 2, a typical
    instance has coordinates at the lower bound, at the upper bound and free.
    """
    c = np.exp(rng.uniform(np.log(0.2), np.log(5.0), (batch, size)))
    b = spread * rng.standard_normal((batch, size))
    lower = rng.uniform(-2.0, 0.5, (batch, size))
    upper = lower + rng.uniform(0.1, 2.0, (batch, size))
    total = lower.sum(-1) + rng.uniform(*fraction, batch) * (upper - lower).sum(-1)
    return c, b, total, lower, upper


def as_tensors(instance: Instance, dtype: torch.dtype = torch.float64, grad: bool = False) -> list[torch.Tensor]:
    """Convert an instance to tensors (optionally requiring grad)."""
    return [torch.tensor(a, dtype=dtype, requires_grad=grad) for a in instance]


def reference_solve(c: np.ndarray, b: np.ndarray, total: float, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Direct cvxpy solve of one instance with Clarabel, written independently of the layers."""
    x = cp.Variable(c.shape[0])
    objective = cp.Minimize(cp.sum(cp.multiply(1.0 / (2.0 * c), cp.square(x))) + b @ x)
    problem = cp.Problem(objective, [cp.sum(x) == total, x >= lower, x <= upper])
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    assert problem.status == cp.OPTIMAL, problem.status
    return np.asarray(x.value)


def reference_batch(instance: Instance) -> np.ndarray:
    """:func:`reference_solve` for every instance of a batch."""
    c, b, total, lower, upper = instance
    return np.stack([reference_solve(c[i], b[i], total[i], lower[i], upper[i]) for i in range(c.shape[0])])


def rel_err(value: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> float:
    """Largest absolute error relative to the largest reference magnitude."""
    value_np = value.detach().numpy() if isinstance(value, torch.Tensor) else value
    ref_np = reference.detach().numpy() if isinstance(reference, torch.Tensor) else reference
    return float(np.abs(value_np - ref_np).max() / max(np.abs(ref_np).max(), 1e-12))


def breakpoint_margin(instance: Instance) -> float:
    """Smallest distance of an unclipped coordinate ``c (nu - b)`` to its bounds.

    A positive margin means no coordinate is at a breakpoint, so the active set (and the
    derivative) is locally constant. Instances with an empty free set get margin 0.
    """
    c, b, _, lower, upper = instance
    x = WATERFILL(*as_tensors(instance)).numpy()
    free = (x > lower) & (x < upper)
    if not free.any(axis=-1).all():
        return 0.0
    nu = np.array([np.mean(x[i, free[i]] / c[i, free[i]] + b[i, free[i]]) for i in range(c.shape[0])])
    unclipped = c * (nu[:, None] - b)
    return float(np.minimum(np.abs(unclipped - lower), np.abs(unclipped - upper)).min())


def instance_with_margin(rng: np.random.Generator, batch: int, size: int, margin: float = 1e-2) -> Instance:
    """Draw random instances until one has every coordinate away from its breakpoints and
    at least two free coordinates per instance (so gradients wrt c and b are not all 0)."""
    for _ in range(200):
        instance = random_instance(rng, batch, size)
        _, _, _, lower, upper = instance
        x = WATERFILL(*as_tensors(instance)).numpy()
        enough_free = (((x > lower) & (x < upper)).sum(axis=-1) >= 2).all()
        if enough_free and breakpoint_margin(instance) > margin:
            return instance
    raise RuntimeError("could not draw a non-degenerate instance")  # pragma: no cover


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("name", ["waterfill", "cvxpylayers"])
@pytest.mark.parametrize("size", [5, 12, 40])
def test_forward_matches_direct_cvxpy_solve(name: str, size: int) -> None:
    rng = np.random.default_rng(size)
    instance = random_instance(rng, batch=3, size=size)
    reference = reference_batch(instance)
    _, _, _, lower, upper = instance
    # The instances exercise both kinds of active bounds.
    assert np.isclose(reference, lower, atol=1e-7).any()
    assert np.isclose(reference, upper, atol=1e-7).any()

    layer = WATERFILL if name == "waterfill" else CVXPY
    x = layer(*as_tensors(instance))
    assert x.shape == (3, size) and x.dtype == torch.float64
    assert rel_err(x, reference) < 1e-6


def test_cvxpy_layer_with_clarabel_backend() -> None:
    """Clarabel is selectable; on this conic formulation it reaches about 1e-5 (measured)."""
    instance = random_instance(np.random.default_rng(7), batch=2, size=12)
    layer = CvxpyAllocationLayer(solve_method="Clarabel")
    tensors = as_tensors(instance, grad=True)
    x = layer(*tensors)
    assert rel_err(x, reference_batch(instance)) < 1e-4
    x.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in tensors)


def test_waterfill_satisfies_kkt_conditions() -> None:
    rng = np.random.default_rng(1)
    instance = random_instance(rng, batch=4, size=30)
    c, b, total, lower, upper = instance
    x = WATERFILL(*as_tensors(instance)).numpy()

    # Primal feasibility.
    np.testing.assert_allclose(x.sum(-1), total, rtol=0, atol=1e-10)
    assert (x >= lower).all() and (x <= upper).all()

    # Stationarity x_k / c_k + b_k - nu - mu_k + lambda_k = 0 with mu, lambda >= 0 and
    # complementary slackness: equality (one multiplier nu) on free coordinates,
    # x/c + b >= nu at the lower bound and x/c + b <= nu at the upper bound.
    marginal = x / c + b
    at_lower = np.isclose(x, lower, rtol=0, atol=1e-12)
    at_upper = np.isclose(x, upper, rtol=0, atol=1e-12)
    free = ~at_lower & ~at_upper
    assert at_lower.any() and at_upper.any()
    for i in range(c.shape[0]):
        assert free[i].any()
        nu = marginal[i, free[i]].mean()
        np.testing.assert_allclose(marginal[i, free[i]], nu, rtol=0, atol=1e-10)
        assert (marginal[i, at_lower[i]] >= nu - 1e-10).all()
        assert (marginal[i, at_upper[i]] <= nu + 1e-10).all()


def test_waterfill_float32_keeps_dtype_and_matches_float64() -> None:
    rng = np.random.default_rng(2)
    instance = random_instance(rng, batch=3, size=20)
    tensors32 = as_tensors(instance, dtype=torch.float32, grad=True)
    x32 = WATERFILL(*tensors32)
    assert x32.dtype == torch.float32
    x32.square().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.float32 for t in tensors32)
    x64 = WATERFILL(*as_tensors(instance))
    assert rel_err(x32.double(), x64) < 1e-5


def test_cvxpy_layer_keeps_dtype_and_runs_without_grad() -> None:
    rng = np.random.default_rng(3)
    instance = random_instance(rng, batch=2, size=6)
    tensors = as_tensors(instance, dtype=torch.float32, grad=True)
    with torch.no_grad():  # derivative-only solver options must not reach the solve-only path
        x = CVXPY(*tensors)
    assert x.dtype == torch.float32 and not x.requires_grad
    y = CVXPY(*tensors)
    assert y.dtype == torch.float32 and y.requires_grad
    y.sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.float32 for t in tensors)
    assert rel_err(x.double(), reference_batch(instance)) < 1e-5


# --------------------------------------------------------------------------- gradients


def test_waterfill_gradcheck_all_inputs() -> None:
    rng = np.random.default_rng(4)
    instance = instance_with_margin(rng, batch=2, size=7)
    x = WATERFILL(*as_tensors(instance)).numpy()
    _, _, _, lower, upper = instance
    assert np.isclose(x, lower).any() and np.isclose(x, upper).any()
    assert torch.autograd.gradcheck(WATERFILL, tuple(as_tensors(instance, grad=True)), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_waterfill_empty_free_set_convention() -> None:
    """All coordinates at bounds: x = bounds, zero gradient wrt c, b, total, no NaN."""
    c = torch.tensor([[1.0, 2.0, 0.5], [1.0, 1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.3, -0.2, 0.1], [0.0, 1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    lower = torch.tensor([[0.0, 1.0, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    upper = torch.tensor([[0.0, 1.0, -1.0], [1.0, 1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    # Instance 0: lower == upper; instance 1: total = sum(upper).
    total = torch.tensor([0.0, 3.0], dtype=torch.float64, requires_grad=True)
    x = WATERFILL(c, b, total, lower, upper)
    torch.testing.assert_close(x, torch.tensor([[0.0, 1.0, -1.0], [1.0, 1.0, 1.0]], dtype=torch.float64))
    weights = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    (x * weights).sum().backward()
    assert c.grad is not None and b.grad is not None and total.grad is not None
    assert lower.grad is not None and upper.grad is not None
    assert torch.count_nonzero(c.grad) == 0 and torch.count_nonzero(b.grad) == 0
    assert torch.count_nonzero(total.grad) == 0
    torch.testing.assert_close(lower.grad + upper.grad, weights)
    torch.testing.assert_close(upper.grad[1], weights[1])


def test_cvxpy_layer_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(5)
    instance = instance_with_margin(rng, batch=1, size=6)
    weights = rng.standard_normal(6)
    tensors = as_tensors(instance, grad=True)
    x = CVXPY(*tensors)
    (x[0] @ torch.tensor(weights)).backward()

    step = 1e-5
    c, b, total, lower, upper = (a[0] for a in instance)
    args = [c, b, np.array(total), lower, upper]

    def functional(values: list[np.ndarray]) -> float:
        return float(weights @ reference_solve(values[0], values[1], float(values[2]), values[3], values[4]))

    analytic, numeric = [], []
    for position, tensor in enumerate(tensors):
        assert tensor.grad is not None
        analytic.append(tensor.grad.numpy().reshape(-1))
        numeric.append(np.zeros_like(analytic[-1]))
        for k in range(analytic[-1].size):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[position].reshape(-1)[k] += step
            minus[position].reshape(-1)[k] -= step
            numeric[-1][k] = (functional(plus) - functional(minus)) / (2 * step)
    # Errors relative to the largest derivative over all inputs (some blocks are ~0).
    scale = max(np.abs(n).max() for n in numeric)
    for position, (a, n) in enumerate(zip(analytic, numeric, strict=True)):
        assert np.abs(a - n).max() < 1e-6 * scale, (position, a, n)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(2, 30),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    spread=st.floats(0.1, 4.0),
    fraction=st.floats(0.05, 0.95),
)
def test_layers_agree(size: int, batch: int, seed: int, spread: float, fraction: float) -> None:
    rng = np.random.default_rng(seed)
    instance = random_instance(rng, batch, size, spread=spread, fraction=(fraction, fraction))
    # Gradients are compared only where they are defined: no coordinate at a breakpoint.
    assume(breakpoint_margin(instance) > 1e-4)
    weights = torch.tensor(rng.standard_normal((batch, size)))

    results = []
    for layer in (WATERFILL, CVXPY):
        c, b, total, lower, upper = as_tensors(instance)
        b.requires_grad_()
        total.requires_grad_()
        x = layer(c, b, total, lower, upper)
        grad_b, grad_total = torch.autograd.grad((x * weights).sum(), (b, total))
        results.append((x.detach(), grad_b, grad_total))
    (x_w, gb_w, gl_w), (x_c, gb_c, gl_c) = results
    assert rel_err(x_c, x_w) < 1e-6
    scale = max(gb_w.abs().max().item(), gl_w.abs().max().item(), 1.0)
    assert (gb_c - gb_w).abs().max().item() < 1e-5 * scale
    assert (gl_c - gl_w).abs().max().item() < 1e-5 * scale


# --------------------------------------------------------------------------- validation


def _valid_tensors(batch: int = 5, size: int = 4) -> list[torch.Tensor]:
    return as_tensors(random_instance(np.random.default_rng(6), batch, size))


@pytest.fixture(params=["waterfill", "cvxpylayers"])
def layer(request: pytest.FixtureRequest) -> AllocationLayer:
    return WATERFILL if request.param == "waterfill" else CVXPY


def test_infeasible_total_names_indices(layer: AllocationLayer) -> None:
    c, b, total, lower, upper = _valid_tensors()
    total = total.clone()
    total[1] = lower[1].sum() - 0.5
    total[3] = upper[3].sum() + 0.5
    with pytest.raises(InfeasibleProgramError, match=r"2 of 5 instance\(s\), batch indices \[1, 3\]") as info:
        layer(c, b, total, lower, upper)
    assert info.value.indices == [1, 3]
    assert isinstance(info.value, ValueError)


def test_feasibility_allows_rounding_tolerance(layer: AllocationLayer) -> None:
    c, b, total, lower, upper = _valid_tensors()
    total = upper.sum(-1) * (1 + 1e-14)
    x = layer(c, b, total, lower, upper)
    torch.testing.assert_close(x, upper, rtol=0, atol=1e-6)


def test_many_infeasible_indices_are_truncated() -> None:
    c, b, _, lower, upper = _valid_tensors(batch=20)
    with pytest.raises(InfeasibleProgramError, match=r"20 of 20 .*\[0, 1, 2, 3, 4, 5, 6, 7, \.\.\. \(\+12 more\)\]"):
        WATERFILL(c, b, lower.sum(-1) - 1.0, lower, upper)


def test_nonpositive_weight_rejected(layer: AllocationLayer) -> None:
    c, b, total, lower, upper = _valid_tensors()
    c = c.clone()
    c[2, 1] = 0.0
    with pytest.raises(ValueError, match=r"c must be strictly positive.*\[2\]"):
        layer(c, b, total, lower, upper)


def test_nan_input_rejected(layer: AllocationLayer) -> None:
    c, b, total, lower, upper = _valid_tensors()
    b = b.clone()
    b[4, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^b has non-finite values.*\[4\]"):
        layer(c, b, total, lower, upper)


def test_lower_above_upper_rejected(layer: AllocationLayer) -> None:
    c, b, total, lower, upper = _valid_tensors()
    with pytest.raises(ValueError, match=r"lower must not exceed upper.*\[0, 1, 2, 3, 4\]"):
        layer(c, b, total, upper, lower)


@pytest.mark.parametrize(
    ("argument", "bad_shape"),
    [("lower", (5, 3)), ("b", (4, 4)), ("total", (5, 1)), ("c", (20,))],
)
def test_shape_mismatch_names_argument(layer: AllocationLayer, argument: str, bad_shape: tuple[int, ...]) -> None:
    named = dict(zip(["c", "b", "total", "lower", "upper"], _valid_tensors(), strict=True))
    named[argument] = torch.ones(bad_shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"^{argument} must have shape"):
        layer(**named)


def test_dtype_mismatch_rejected() -> None:
    c, b, total, lower, upper = _valid_tensors()
    with pytest.raises(TypeError, match=r"upper has dtype torch\.float32"):
        WATERFILL(c, b, total, lower, upper.float())


# --------------------------------------------------------------------------- registry & misc


def test_registry_builds_layers_by_name() -> None:
    assert set(ALLOCATION_LAYERS) == {"waterfill", "cvxpylayers"}
    waterfill = make_allocation_layer("waterfill", search="bisection", iterations=80)
    assert isinstance(waterfill, WaterFillingLayer) and waterfill.iterations == 80
    with pytest.raises(ValueError, match="search must be 'sort' or 'bisection'"):
        WaterFillingLayer(search="newton")
    cvx = make_allocation_layer("cvxpylayers", eps=1e-8, mode="lsmr")
    assert isinstance(cvx, CvxpyAllocationLayer) and cvx.derivative_mode(10) == "lsmr"
    assert CvxpyAllocationLayer().derivative_mode(10) == "dense"
    assert CvxpyAllocationLayer().derivative_mode(1000) == "lsmr"


def test_unknown_layer_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown allocation layer 'qp'.*'cvxpylayers', 'waterfill'"):
        make_allocation_layer("qp")


def test_cvxpy_layer_is_deep_copyable_after_use() -> None:
    layer = CvxpyAllocationLayer()
    tensors = _valid_tensors(batch=2)
    expected = layer(*tensors)
    clone = copy.deepcopy(layer)
    torch.testing.assert_close(clone(*tensors), expected)


def test_cvxpy_solver_failure_is_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    import diffcp

    def failing_solve(*args: object, **kwargs: object) -> None:
        raise diffcp.SolverError("Solver scs returned status infeasible")

    monkeypatch.setattr(diffcp, "solve_only_batch", failing_solve)
    with torch.no_grad(), pytest.raises(AllocationSolverError, match="SCS failed on an allocation batch"):
        CVXPY(*_valid_tensors())


@settings(max_examples=60, deadline=None, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(1, 40),
    fraction=st.sampled_from([(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.4, 0.6)]),
    tied=st.booleans(),
)
def test_sorted_breakpoint_search_equals_bisection(seed: int, size: int, fraction, tied: bool) -> None:
    """The exact breakpoint search (default) and 100-step bisection give the same solution,
    including totals at sum lo / sum hi and fixed coordinates (lo = hi), and the same
    gradients where the solution map is differentiable (at those kinks the two searches may
    land on different sides of a breakpoint, so only one-sided derivatives exist)."""
    rng = np.random.default_rng(seed)
    c, b, total, lower, upper = random_instance(rng, 3, size, fraction=fraction)
    if tied:
        upper[:, ::3] = lower[:, ::3]
        total = lower.sum(-1) + rng.uniform(*fraction, 3) * (upper - lower).sum(-1)
    bisection = WaterFillingLayer(search="bisection")
    outputs, grads = [], []
    for layer in (WATERFILL, bisection):
        tensors = as_tensors((c, b, total, lower, upper), grad=True)
        x = layer(*tensors)
        (x * torch.linspace(-1.0, 1.0, size, dtype=torch.float64)).sum().backward()
        outputs.append(x.detach())
        grads.append([t.grad for t in tensors])
    scale = max(1.0, float(outputs[1].abs().max()))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-9 * scale)
    if fraction == (0.4, 0.6) and not tied:
        for g_sort, g_bisect in zip(*grads):
            torch.testing.assert_close(g_sort, g_bisect, rtol=1e-7, atol=1e-9)
