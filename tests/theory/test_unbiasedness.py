"""Unbiasedness of the guidance estimator for discrete actions (softmax policies).

Setting (drawn by hypothesis): N in 1..4 agents, A in 2..3 options, D in 1..4 state
dimensions, an affine state map x(a) = x0 + sum_i C_i[a_i] (C: [N, A, D]), a fixed
(exogenous) reference x_ref and independent softmax policies pi_i = softmax(theta_i).
The guidance objective G(theta) = E[d(x, x_ref)], d = 1/2 ||x - x_ref||^2, is computed
EXACTLY by enumerating the A^N joint actions, and its gradient by autograd.

With z_i = C_i[a_i] and g_i = <x - x_ref, z_i> (the library's ``guidance``):

    d(x) - d(x - z_i) = g_i - 1/2 ||z_i||^2,

and d(x - z_i) does not depend on a_i, so E[(g_i - 1/2 ||z_i||^2) grad_i log pi_i]
= E[d grad_i log pi_i] = grad_i G (unbiased: ``exact_difference=True``), while the
first-order weight g_i (``exact_difference=False``, the paper's) has the bias
E[1/2 ||z_i||^2 grad_i log pi_i] = grad_{theta_i} E_{pi_i}[1/2 ||C_i[a]||^2], which
vanishes when ||C_i[a]||^2 is the same for every option a. See docs/theory_tests.md.

All expectations here are exact sums over joint actions (float64, tight tolerance),
except the Monte Carlo test, which checks the sampled estimator against the exact
gradient with a bound of 5 *exact* standard errors (from the enumerated variance).
"""

from __future__ import annotations

import itertools
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
"""Tolerance of identities that hold exactly (float64 sums of at most 81 terms of size O(10))."""


# ----------------------------------------------------------------------------- the model
@dataclass
class Problem:
    model: AffineDiscreteModel
    ctx: AffineContext
    theta: Tensor  # [N, A] logits

    @property
    def shape(self) -> tuple[int, int, int]:
        n, a, d = self.ctx.effect.shape
        return n, a, d


@st.composite
def problems(draw: st.DrawFn, equal_norms: bool | None = None, logit_scale: float = 2.5) -> Problem:
    """A random small problem; the arrays come from a drawn seed (generic values), the
    structure (sizes, equal option norms, an agent without influence, logit scale) from
    hypothesis directly."""
    n, a, d = draw(st.integers(1, 4)), draw(st.integers(2, 3)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    equal = draw(st.booleans()) if equal_norms is None else equal_norms
    effect = rng.standard_normal((n, a, d))
    if equal:  # ||C_i[a]|| the same for every option a of agent i (directions differ)
        norms = np.linalg.norm(effect, axis=-1, keepdims=True)
        effect = effect / np.maximum(norms, 1e-12) * rng.uniform(0.3, 2.0, (n, 1, 1))
    if n > 1 and draw(st.booleans()):
        effect[draw(st.integers(0, n - 1))] = 0.0  # an agent whose choice changes nothing
    scale = draw(st.floats(0.0, logit_scale))
    with default_dtype():
        ctx = AffineContext(
            x0=torch.tensor(rng.standard_normal(d)),
            effect=torch.tensor(effect),
            x_ref=torch.tensor(2.0 * rng.standard_normal(d)),
        )
        theta = torch.tensor(scale * rng.standard_normal((n, a)))
    return Problem(AffineDiscreteModel(num_actions=a), ctx, theta)


# ----------------------------------------------------------------------------- exact machinery
def all_joint_actions(n: int, a: int) -> Tensor:
    """Every joint action, ``[A^N, N]`` long (one environment per joint action)."""
    return torch.tensor(list(itertools.product(range(a), repeat=n)), dtype=torch.long).reshape(-1, n)


def joint_log_prob(theta: Tensor, actions: Tensor) -> Tensor:
    """log p(a) = sum_i log softmax(theta_i)[a_i], ``[E]``."""
    logp = torch.log_softmax(theta, dim=-1)  # [N, A]
    return logp.gather(1, actions.T).sum(0)


def score(theta: Tensor, actions: Tensor) -> Tensor:
    """grad_{theta_i} log pi_i(a_i) for every sample and agent, ``[E, N, A]``, by autograd.

    Because log p(a) = sum_i log pi_i(a_i), the block theta_i of grad_theta log p(a) is agent
    i's own score; the Jacobian of the [E] vector log p gives all of them at once.
    """
    return torch.autograd.functional.jacobian(lambda th: joint_log_prob(th, actions), theta)


def expectation(prob: Tensor, weight: Tensor, scores: Tensor) -> Tensor:
    """E[w_i grad_i log pi_i] = sum_a p(a) w_i(a) score_i(a), ``[N, A]``."""
    return torch.einsum("e,en,ena->na", prob, weight, scores)


def objective_gradient(p: Problem, actions: Tensor) -> Tensor:
    """grad_theta G with G = sum_a p_theta(a) d(x(a), x_ref), exactly (autograd), ``[N, A]``."""
    ctx = p.ctx.for_envs(actions.shape[0])
    dist = p.model.distance(p.model.state(actions, ctx), p.model.reference(ctx))
    theta = p.theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((joint_log_prob(theta, actions).exp() * dist).sum(), theta)
    return grad


def first_order_bias(p: Problem) -> Tensor:
    """Predicted bias grad_{theta_i} E_{pi_i}[1/2 ||C_i[a]||^2] (autograd), ``[N, A]``."""
    theta = p.theta.clone().requires_grad_(True)
    half_sq = 0.5 * p.ctx.effect.square().sum(-1)  # [N, A]
    (grad,) = torch.autograd.grad((torch.softmax(theta, -1) * half_sq).sum(), theta)
    return grad


# ----------------------------------------------------------------------------- tests
@settings(max_examples=40, deadline=None, database=None)
@given(p=problems())
def test_library_influence_and_guidance_are_the_option_effects(p: Problem) -> None:
    """influence = C_i[a_i] (the state change of agent i's option relative to doing
    nothing); guidance = <x - x_ref, C_i[a_i]>; exact_difference = d(x) - d(x - z_i)."""
    with default_dtype():
        n, a, d = p.shape
        actions = all_joint_actions(n, a)
        ctx = p.ctx.for_envs(actions.shape[0])
        chosen = p.ctx.effect[torch.arange(n), actions]  # [E, N, D]
        torch.testing.assert_close(p.model.influence(actions, ctx).dense(d), chosen, **EXACT)
        x = p.model.state(actions, ctx)
        torch.testing.assert_close(x - p.ctx.x0, chosen.sum(1), **EXACT)
        g = guidance_weights(p.model, actions, ctx)
        torch.testing.assert_close(g, torch.einsum("end,ed->en", chosen, x - p.ctx.x_ref), **EXACT)
        # x without agent i's contribution: the same one-hot with row i zeroed
        onehot = p.model.relax(actions)
        d_all = p.model.distance(x, p.ctx.x_ref)
        keep = [(torch.arange(n) != i).to(onehot.dtype)[:, None] for i in range(n)]
        difference = torch.stack(
            [d_all - p.model.distance(p.model.system_state(onehot * keep[i], ctx), p.ctx.x_ref) for i in range(n)], dim=1
        )
        exact = guidance_weights(p.model, actions, ctx, exact_difference=True)
        torch.testing.assert_close(exact, difference, **EXACT)
        torch.testing.assert_close(exact, g - 0.5 * chosen.square().sum(-1), **EXACT)


@settings(max_examples=40, deadline=None, database=None)
@given(p=problems())
def test_exact_difference_estimator_is_unbiased(p: Problem) -> None:
    """E[(g_i - 1/2||z_i||^2) grad_i log pi_i] = grad_i G exactly, for every problem."""
    with default_dtype():
        n, a, _ = p.shape
        actions = all_joint_actions(n, a)
        ctx = p.ctx.for_envs(actions.shape[0])
        prob = joint_log_prob(p.theta, actions).exp()
        torch.testing.assert_close(prob.sum(), torch.tensor(1.0), **EXACT)
        weight = guidance_weights(p.model, actions, ctx, exact_difference=True)
        grad = objective_gradient(p, actions)
        torch.testing.assert_close(expectation(prob, weight, score(p.theta, actions)), grad, **EXACT)
        # the full distance d(x) (REINFORCE with the guidance objective) is unbiased too: the
        # exact-difference weight is d(x) minus a baseline that does not depend on a_i
        dist = p.model.distance(p.model.state(actions, ctx), p.ctx.x_ref)
        torch.testing.assert_close(
            expectation(prob, dist[:, None].expand(-1, n), score(p.theta, actions)), grad, **EXACT
        )


@settings(max_examples=40, deadline=None, database=None)
@given(p=problems())
def test_first_order_estimator_bias_is_the_half_squared_norm_term(p: Problem) -> None:
    """E[g_i grad_i log pi_i] - grad_i G = grad_{theta_i} E_{pi_i}[1/2 ||C_i[a]||^2] exactly."""
    with default_dtype():
        n, a, _ = p.shape
        actions = all_joint_actions(n, a)
        ctx = p.ctx.for_envs(actions.shape[0])
        prob = joint_log_prob(p.theta, actions).exp()
        first_order = expectation(prob, guidance_weights(p.model, actions, ctx), score(p.theta, actions))
        bias = first_order - objective_gradient(p, actions)
        predicted = first_order_bias(p)
        torch.testing.assert_close(bias, predicted, **EXACT)
        # closed form of the prediction for softmax: pi_i(a) (s_i(a) - E_{pi_i} s_i), s = 1/2||C_i[a]||^2
        half_sq = 0.5 * p.ctx.effect.square().sum(-1)
        pi = torch.softmax(p.theta, -1)
        torch.testing.assert_close(predicted, pi * (half_sq - (pi * half_sq).sum(-1, keepdim=True)), **EXACT)


@settings(max_examples=30, deadline=None, database=None)
@given(p=problems(equal_norms=True))
def test_first_order_estimator_is_unbiased_when_option_norms_are_equal(p: Problem) -> None:
    with default_dtype():
        n, a, _ = p.shape
        actions = all_joint_actions(n, a)
        ctx = p.ctx.for_envs(actions.shape[0])
        prob = joint_log_prob(p.theta, actions).exp()
        first_order = expectation(prob, guidance_weights(p.model, actions, ctx), score(p.theta, actions))
        torch.testing.assert_close(first_order, objective_gradient(p, actions), **EXACT)


@settings(max_examples=30, deadline=None, database=None)
@given(p=problems(equal_norms=False))
def test_first_order_bias_is_detected_when_option_norms_differ(p: Problem) -> None:
    """The reverse check: with unequal option norms the first-order estimator is off by a
    non-negligible amount, far outside the exact-test tolerance."""
    with default_dtype():
        predicted = first_order_bias(p)
        assume(predicted.abs().max() > 1e-3)
        n, a, _ = p.shape
        actions = all_joint_actions(n, a)
        ctx = p.ctx.for_envs(actions.shape[0])
        prob = joint_log_prob(p.theta, actions).exp()
        first_order = expectation(prob, guidance_weights(p.model, actions, ctx), score(p.theta, actions))
        gap = (first_order - objective_gradient(p, actions)).abs().max()
        assert gap > 1e-3 - 1e-9, gap


MC_SAMPLES = 20_000
Z = 5.0


@settings(max_examples=25, deadline=None, database=None)
@given(p=problems(), seed=st.integers(0, 2**31 - 1))
def test_monte_carlo_exact_difference_estimator_matches_the_gradient(p: Problem, seed: int) -> None:
    """Sampled joint actions as E environments, weights from the library's ``guidance``:
    the sample mean of (g_i - 1/2||z_i||^2) grad_i log pi_i lies within 5 exact standard
    errors (+1e-9) of grad_i G in every component."""
    with default_dtype():
        n, a, _ = p.shape
        gen = torch.Generator().manual_seed(seed)
        pi = torch.softmax(p.theta, -1)
        sampled = torch.multinomial(pi, MC_SAMPLES, replacement=True, generator=gen).T  # [E, N]
        ctx = p.ctx.for_envs(MC_SAMPLES)
        weight = guidance_weights(p.model, sampled, ctx, exact_difference=True)
        sample_score = torch.nn.functional.one_hot(sampled, a).to(pi.dtype) - pi  # softmax score e_a - pi
        estimate = (weight[..., None] * sample_score).mean(0)

        # exact mean and standard error of one sample, by enumeration
        actions = all_joint_actions(n, a)
        prob = joint_log_prob(p.theta, actions).exp()
        terms = guidance_weights(p.model, actions, p.ctx.for_envs(actions.shape[0]), exact_difference=True)[..., None] * score(
            p.theta, actions
        )
        mean = torch.einsum("e,ena->na", prob, terms)
        std = (torch.einsum("e,ena->na", prob, terms.square()) - mean.square()).clamp_min(0).sqrt()
        grad = objective_gradient(p, actions)
        torch.testing.assert_close(mean, grad, **EXACT)
        bound = Z * std / MC_SAMPLES**0.5 + 1e-9
        assert ((estimate - grad).abs() <= bound).all(), ((estimate - grad).abs() / bound).max()
