"""Reverse check of the exogeneity assumption: a policy-dependent reference biases the estimator.

Same discrete setting as test_unbiasedness.py (affine state map, softmax policies, exact
enumeration of the A^N joint actions), but the reference now depends on the policy,
x_ref = r(theta). The true objective is G(theta) = E_theta[d(x, r(theta))]. The library
treats x_ref as a constant (``reference`` runs under no_grad), so the estimator, even with
the exact-difference weight, has expectation the partial gradient d_theta G(theta, r) at
fixed r, and

    E[estimator] - grad G = -(dG/dr) dr/dtheta = (E_theta[x] - r)^T dr/dtheta.

* r(theta) = K (E_theta[x] - x0) + r0 with a random K: the bias is non-zero, equals the
  formula exactly, and a Monte Carlo test with a 5-standard-error bound detects it.
* r(theta) = E_theta[x] (the policy's own mean state): E_theta[x] - r = 0, so the bias
  vanishes (envelope theorem: the mean minimises E||x - r||^2 over r). A reference built
  from the policy's mean state is therefore NOT a counterexample; we test that too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor

from guidedmarl.testing import AffineContext, AffineDiscreteModel, default_dtype
from guidedmarl.guidance.weights import guidance_weights

torch.set_num_threads(1)

EXACT = {"rtol": 1e-9, "atol": 1e-10}


@dataclass
class EndogenousProblem:
    x0: Tensor
    effect: Tensor
    theta: Tensor
    mix: Tensor  # K, [D, D]
    offset: Tensor  # r0, [D]

    def mean_state(self, theta: Tensor) -> Tensor:
        return self.x0 + torch.einsum("na,nad->d", torch.softmax(theta, -1), self.effect)

    def shifted_reference(self, theta: Tensor) -> Tensor:
        """r(theta) = K (E_theta[x] - x0) + r0."""
        return self.mix @ (self.mean_state(theta) - self.x0) + self.offset


@st.composite
def endogenous_problems(draw: st.DrawFn) -> EndogenousProblem:
    n, a, d = draw(st.integers(1, 4)), draw(st.integers(2, 3)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return EndogenousProblem(
        x0=torch.tensor(rng.standard_normal(d)),
        effect=torch.tensor(rng.standard_normal((n, a, d))),
        theta=torch.tensor(draw(st.floats(0.0, 2.0)) * rng.standard_normal((n, a))),
        mix=torch.tensor(rng.standard_normal((d, d))),
        offset=torch.tensor(rng.standard_normal(d)),
    )


def all_joint_actions(n: int, a: int) -> Tensor:
    return torch.tensor(list(itertools.product(range(a), repeat=n)), dtype=torch.long).reshape(-1, n)


def joint_log_prob(theta: Tensor, actions: Tensor) -> Tensor:
    return torch.log_softmax(theta, -1).gather(1, actions.T).sum(0)


def estimator_terms(p: EndogenousProblem, reference: Callable[[Tensor], Tensor], actions: Tensor) -> Tensor:
    """(g_i - 1/2||z_i||^2) grad_i log pi_i per joint action, with x_ref = r(theta) frozen, ``[E, N, A]``."""
    model = AffineDiscreteModel(num_actions=p.effect.shape[1])
    ctx = AffineContext(p.x0, p.effect, reference(p.theta).detach(), num_envs=actions.shape[0])
    weight = guidance_weights(model, actions, ctx, exact_difference=True)
    pi = torch.softmax(p.theta, -1)
    return weight[..., None] * (torch.nn.functional.one_hot(actions, pi.shape[1]).to(pi.dtype) - pi)


def true_gradient(p: EndogenousProblem, reference: Callable[[Tensor], Tensor], actions: Tensor) -> Tensor:
    """grad of G(theta) = sum_a p_theta(a) 1/2 ||x(a) - r(theta)||^2, through p AND r."""
    theta = p.theta.clone().requires_grad_(True)
    onehot = torch.nn.functional.one_hot(actions, p.effect.shape[1]).to(p.x0.dtype)
    x = p.x0 + torch.einsum("ena,nad->ed", onehot, p.effect)
    dist = 0.5 * (x - reference(theta)).square().sum(-1)
    (grad,) = torch.autograd.grad((joint_log_prob(theta, actions).exp() * dist).sum(), theta)
    return grad


def predicted_bias(p: EndogenousProblem, reference: Callable[[Tensor], Tensor]) -> Tensor:
    """(E_theta[x] - r)^T dr/dtheta, by autograd."""
    theta = p.theta.clone().requires_grad_(True)
    residual = (p.mean_state(p.theta) - reference(p.theta)).detach()
    (grad,) = torch.autograd.grad(residual @ reference(theta), theta)
    return grad


@settings(max_examples=40, deadline=None, database=None)
@given(p=endogenous_problems())
def test_policy_dependent_reference_biases_the_estimator_exactly_as_predicted(p: EndogenousProblem) -> None:
    with default_dtype():
        n, a, _ = p.effect.shape
        actions = all_joint_actions(n, a)
        prob = joint_log_prob(p.theta, actions).exp()
        expected = torch.einsum("e,ena->na", prob, estimator_terms(p, p.shifted_reference, actions))
        bias = expected - true_gradient(p, p.shifted_reference, actions)
        predicted = predicted_bias(p, p.shifted_reference)
        torch.testing.assert_close(bias, predicted, **EXACT)
        assume(predicted.abs().max() > 1e-3)
        assert bias.abs().max() > 1e-3 - 1e-9  # detected: far outside the exact tolerance


@settings(max_examples=30, deadline=None, database=None)
@given(p=endogenous_problems())
def test_reference_equal_to_the_policy_mean_state_does_not_bias(p: EndogenousProblem) -> None:
    """Envelope theorem: r = E_theta[x] minimises E||x - r||^2, so dG/dr = 0 and the frozen
    reference costs nothing, although r depends on theta (dr/dtheta != 0)."""
    with default_dtype():
        n, a, _ = p.effect.shape
        actions = all_joint_actions(n, a)
        prob = joint_log_prob(p.theta, actions).exp()
        dr = torch.autograd.functional.jacobian(p.mean_state, p.theta)
        assume(dr.abs().max() > 1e-3)  # the reference really moves with the policy
        expected = torch.einsum("e,ena->na", prob, estimator_terms(p, p.mean_state, actions))
        torch.testing.assert_close(expected, true_gradient(p, p.mean_state, actions), **EXACT)


MC_SAMPLES = 20_000
Z = 5.0


@settings(max_examples=20, deadline=None, database=None)
@given(p=endogenous_problems(), seed=st.integers(0, 2**31 - 1))
def test_monte_carlo_detects_the_endogenous_bias(p: EndogenousProblem, seed: int) -> None:
    """The 5-standard-error test that accepts the exogenous estimator (test_unbiasedness.py)
    rejects it here, whenever the bias is at least 15 standard errors in some component."""
    with default_dtype():
        n, a, _ = p.effect.shape
        actions = all_joint_actions(n, a)
        prob = joint_log_prob(p.theta, actions).exp()
        terms = estimator_terms(p, p.shifted_reference, actions)
        mean = torch.einsum("e,ena->na", prob, terms)
        se = (torch.einsum("e,ena->na", prob, terms.square()) - mean.square()).clamp_min(0).sqrt() / MC_SAMPLES**0.5
        truth = true_gradient(p, p.shifted_reference, actions)
        assume(((mean - truth).abs() > 3 * Z * se).any())

        gen = torch.Generator().manual_seed(seed)
        sampled = torch.multinomial(torch.softmax(p.theta, -1), MC_SAMPLES, replacement=True, generator=gen).T
        estimate = estimator_terms(p, p.shifted_reference, sampled).mean(0)
        # consistent with its own (biased) mean ...
        assert ((estimate - mean).abs() <= Z * se + 1e-9).all()
        # ... and rejected as an estimate of the true gradient
        assert ((estimate - truth).abs() > Z * se + 1e-9).any()
