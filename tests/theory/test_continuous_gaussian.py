"""Continuous actions: Gaussian policies on a linear state map. What is, and is not, unbiased.

Setting (drawn by hypothesis): N in 1..3 agents with actions a_i in R^k (k in 1..2),
a_i ~ N(mu_i, diag(sigma_i^2)) independently, x = x0 + sum_i B_i a_i (B_i: [D, k]),
d = 1/2 ||x - x_ref||^2 with a fixed reference. Closed forms (xbar = x0 + sum_i B_i mu_i):

    G = E[d] = 1/2 ||xbar - x_ref||^2 + 1/2 sum_{i,k} sigma_ik^2 ||B_i[:, k]||^2
    grad_{mu_i} G = B_i^T (xbar - x_ref),   grad_{log sigma_ik} G = sigma_ik^2 ||B_i[:, k]||^2.

The library's generic (autograd) guidance is g_i = B_i^T (x - x_ref) per sample (the
pathwise derivative of d), so E[g_i] = grad_{mu_i} G. Used as a score-function weight,
with delta_i = a_i - mu_i, score_mu = delta / sigma^2, score_{log sigma} = delta^2 / sigma^2 - 1:

* D_i = d(x) - d(x with a_i := mu_i) = g_i . delta_i - 1/2 ||B_i delta_i||^2 (exact):
  E[D_i score] = grad G for mu AND log sigma (d(x with a_i := mu_i) does not depend on a_i).
* L_i = g_i . delta_i (the linearised difference): E[L_i score_mu] = grad_mu G (the
  second-order term has odd Gaussian moments), but E[L_i score_{log sigma}] = 2 grad_{log sigma} G.
* g_i itself (what the trainer puts in the advantage): E[g_il score_mu_ik] = (B_i^T B_i)_lk
  (Stein's lemma: the Hessian of d), independent of mu and x_ref; E[g_i score_{log sigma}] = 0.
  So the raw weight g_i does NOT estimate grad G with the score function.

Exact expectations use tensor-product Gauss-Hermite quadrature with 3 nodes per action
coordinate (exact for polynomials of degree <= 5 in each coordinate; every integrand here
has degree <= 4), so these checks are identities up to float64 rounding. The Monte Carlo
tests check the same facts on sampled actions with a bound of 5 standard errors.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor

from guidedmarl.analytical.model import GuidanceError
from guidedmarl.testing import LinearContext, LinearContinuousModel as LinearModel, default_dtype
from guidedmarl.guidance.weights import guidance_weights

torch.set_num_threads(1)

EXACT = {"rtol": 1e-9, "atol": 1e-9}
"""Quadrature is exact for these integrands; the tolerance only absorbs float64 rounding."""


@dataclass
class Gaussian:
    ctx: LinearContext
    mu: Tensor  # [N, k]
    sigma: Tensor  # [N, k]

    @property
    def xbar(self) -> Tensor:
        return self.ctx.x0 + torch.einsum("nk,ndk->d", self.mu, self.ctx.B)

    def objective(self, mu: Tensor, log_sigma: Tensor) -> Tensor:
        """Closed-form G(mu, log sigma)."""
        xbar = self.ctx.x0 + torch.einsum("nk,ndk->d", mu, self.ctx.B)
        spread = (log_sigma.exp().square() * self.ctx.B.square().sum(1)).sum()
        return 0.5 * (xbar - self.ctx.x_ref).square().sum() + 0.5 * spread

    def grad_mu(self) -> Tensor:
        return torch.einsum("ndk,d->nk", self.ctx.B, self.xbar - self.ctx.x_ref)

    def grad_log_sigma(self) -> Tensor:
        return self.sigma.square() * self.ctx.B.square().sum(1)

    def hessian_blocks(self) -> Tensor:
        """B_i^T B_i, ``[N, k, k]``."""
        return torch.einsum("ndl,ndk->nlk", self.ctx.B, self.ctx.B)


@st.composite
def gaussians(draw: st.DrawFn, max_agents: int = 3, max_dim: int = 2) -> Gaussian:
    n, k, d = draw(st.integers(1, max_agents)), draw(st.integers(1, max_dim)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sigma_scale = draw(st.floats(0.1, 2.0))
    ctx = LinearContext(
        x0=torch.tensor(rng.standard_normal(d)),
        B=torch.tensor(rng.standard_normal((n, d, k))),
        x_ref=torch.tensor(2.0 * rng.standard_normal(d)),
    )
    mu = torch.tensor(rng.standard_normal((n, k)))
    sigma = torch.tensor(sigma_scale * rng.uniform(0.5, 1.5, (n, k)))
    return Gaussian(ctx, mu, sigma)


def gauss_hermite(mu: Tensor, sigma: Tensor, nodes: int = 3) -> tuple[Tensor, Tensor]:
    """Tensor-product Gauss-Hermite rule for N(mu, diag sigma^2): points ``[P, N, k]``, weights ``[P]``."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-x^2 / 2)
    w = w / np.sqrt(2.0 * np.pi)
    idx = np.array(list(itertools.product(range(nodes), repeat=mu.numel())))
    eps = torch.tensor(x[idx]).reshape(-1, *mu.shape)
    return mu + sigma * eps, torch.tensor(np.prod(w[idx], axis=1))


def vector_guidance(model: LinearModel, actions: Tensor, ctx: LinearContext) -> Tensor:
    """Library guidance as ``[E, N, k]`` (it squeezes k = 1)."""
    g = guidance_weights(model, actions, ctx)
    return g.unsqueeze(-1) if g.dim() == 2 else g


def difference_weights(model: LinearModel, actions: Tensor, ctx: LinearContext, mu: Tensor) -> Tensor:
    """D_i = d(x) - d(x with a_i replaced by mu_i), ``[E, N]``."""
    x_ref = model.reference(ctx)
    d_all = model.distance(model.state(actions, ctx), x_ref)
    out = []
    for i in range(actions.shape[1]):
        replaced = actions.clone()
        replaced[:, i] = mu[i]
        out.append(d_all - model.distance(model.state(replaced, ctx), x_ref))
    return torch.stack(out, dim=1)


def scores(p: Gaussian, actions: Tensor) -> tuple[Tensor, Tensor]:
    """(score wrt mu, score wrt log sigma), each ``[E, N, k]``."""
    delta = actions - p.mu
    return delta / p.sigma.square(), (delta / p.sigma).square() - 1.0


# ----------------------------------------------------------------------------- exact (quadrature)
@settings(max_examples=40, deadline=None, database=None)
@given(p=gaussians())
def test_closed_forms_and_pathwise_guidance(p: Gaussian) -> None:
    """The quadrature reproduces G; the closed-form gradients are the autograd gradients of
    G; the library's guidance is B_i^T (x - x_ref) per sample, and its mean is grad_mu G."""
    with default_dtype():
        model = LinearModel()
        actions, w = gauss_hermite(p.mu, p.sigma)
        x = model.state(actions, p.ctx)
        mu, log_sigma = p.mu.clone().requires_grad_(True), p.sigma.log().requires_grad_(True)
        value = p.objective(mu, log_sigma)
        grad_mu, grad_log_sigma = torch.autograd.grad(value, (mu, log_sigma))
        torch.testing.assert_close(value.detach(), (w * model.distance(x, p.ctx.x_ref)).sum(), **EXACT)
        torch.testing.assert_close(grad_mu, p.grad_mu(), **EXACT)
        torch.testing.assert_close(grad_log_sigma, p.grad_log_sigma(), **EXACT)

        g = vector_guidance(model, actions, p.ctx)
        torch.testing.assert_close(g, torch.einsum("ndk,ed->enk", p.ctx.B, x - p.ctx.x_ref), **EXACT)
        n, d, k = p.ctx.B.shape
        z = model.influence(actions, p.ctx).dense(d)
        z = z.unsqueeze(-1) if k == 1 else z  # [E, N, D, k]
        torch.testing.assert_close(z, p.ctx.B.expand(actions.shape[0], -1, -1, -1), **EXACT)
        torch.testing.assert_close(torch.einsum("e,enk->nk", w, g), p.grad_mu(), **EXACT)


@settings(max_examples=40, deadline=None, database=None)
@given(p=gaussians())
def test_score_function_weights_exact_expectations(p: Gaussian) -> None:
    with default_dtype():
        model = LinearModel()
        actions, w = gauss_hermite(p.mu, p.sigma)
        s_mu, s_log_sigma = scores(p, actions)
        g = vector_guidance(model, actions, p.ctx)  # [E, N, k]
        delta = actions - p.mu
        linear = (g * delta).sum(-1)  # L_i = g_i . delta_i
        diff = difference_weights(model, actions, p.ctx, p.mu)  # D_i
        second = 0.5 * torch.einsum("ndk,enk->end", p.ctx.B, delta).square().sum(-1)
        torch.testing.assert_close(diff, linear - second, **EXACT)  # D = L - 1/2 ||B_i delta_i||^2

        def mean(weight: Tensor, s: Tensor) -> Tensor:  # E[w_i s_i], [N, k]
            return torch.einsum("e,en,enk->nk", w, weight, s)

        # exact difference: unbiased for every policy parameter
        torch.testing.assert_close(mean(diff, s_mu), p.grad_mu(), **EXACT)
        torch.testing.assert_close(mean(diff, s_log_sigma), p.grad_log_sigma(), **EXACT)
        # linearised difference: unbiased for the mean, twice the gradient for log sigma
        torch.testing.assert_close(mean(linear, s_mu), p.grad_mu(), **EXACT)
        torch.testing.assert_close(mean(linear, s_log_sigma), 2.0 * p.grad_log_sigma(), **EXACT)
        # raw Jacobian product g (Stein's lemma): the Hessian B_i^T B_i, and nothing for sigma
        torch.testing.assert_close(torch.einsum("e,enl,enk->nlk", w, g, s_mu), p.hessian_blocks(), **EXACT)
        torch.testing.assert_close(
            torch.einsum("e,enl,enk->nlk", w, g, s_log_sigma), torch.zeros_like(p.hessian_blocks()), **EXACT
        )


@settings(max_examples=30, deadline=None, database=None)
@given(p=gaussians(max_dim=1))
def test_raw_guidance_weight_ignores_where_the_reference_is(p: Gaussian) -> None:
    """Scalar actions, as the trainer uses them: mirror the reference through xbar
    (x_ref' = 2 xbar - x_ref). grad_mu G flips sign, but the expected score-function update
    of the raw weight g stays ||B_i||^2: it cannot be an estimator of grad G. (The library
    refuses ``exact_difference=True`` for continuous actions without a mean: see the last test.)"""
    with default_dtype():
        assume(p.grad_mu().abs().max() > 1e-2)
        model = LinearModel()
        actions, w = gauss_hermite(p.mu, p.sigma)
        s_mu, _ = scores(p, actions)
        mirrored = Gaussian(LinearContext(p.ctx.x0, p.ctx.B, 2.0 * p.xbar - p.ctx.x_ref), p.mu, p.sigma)
        torch.testing.assert_close(mirrored.grad_mu(), -p.grad_mu(), **EXACT)
        sq_norm = p.ctx.B.square().sum((1, 2))  # ||B_i||^2, [N]
        for problem in (p, mirrored):
            g = guidance_weights(model, actions, problem.ctx)  # [E, N]
            expected_update = torch.einsum("e,en,en->n", w, g, s_mu[..., 0])
            torch.testing.assert_close(expected_update, sq_norm, **EXACT)
        # ... while the gradient differs between the two problems by 2 |grad_mu G| > 0
        assert (p.grad_mu() - mirrored.grad_mu()).abs().max() > 2e-2


# ----------------------------------------------------------------------------- Monte Carlo
MC_SAMPLES = 40_000
Z = 5.0


def sample(p: Gaussian, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn((MC_SAMPLES, *p.mu.shape), generator=gen, dtype=torch.float64)
    return p.mu + p.sigma * eps


def within(samples: Tensor, target: Tensor) -> tuple[bool, float]:
    """Sample mean within Z standard errors (+1e-9) of target, componentwise; worst ratio."""
    err = (samples.mean(0) - target).abs()
    bound = Z * samples.std(0) / MC_SAMPLES**0.5 + 1e-9
    return bool((err <= bound).all()), float((err / bound).max())


@settings(max_examples=20, deadline=None, database=None)
@given(p=gaussians(), seed=st.integers(0, 2**31 - 1))
def test_monte_carlo_pathwise_and_exact_difference_are_unbiased(p: Gaussian, seed: int) -> None:
    with default_dtype():
        model = LinearModel()
        actions = sample(p, seed)
        g = vector_guidance(model, actions, p.ctx)
        ok, ratio = within(g, p.grad_mu())  # pathwise: mean of g
        assert ok, ratio
        s_mu, s_log_sigma = scores(p, actions)
        diff = difference_weights(model, actions, p.ctx, p.mu)[..., None]
        ok, ratio = within(diff * s_mu, p.grad_mu())
        assert ok, ratio
        ok, ratio = within(diff * s_log_sigma, p.grad_log_sigma())
        assert ok, ratio


@settings(max_examples=20, deadline=None, database=None)
@given(p=gaussians(max_dim=1), seed=st.integers(0, 2**31 - 1))
def test_monte_carlo_detects_that_raw_guidance_is_not_the_gradient(p: Gaussian, seed: int) -> None:
    """Scalar actions: the sampled g_i (a_i - mu_i) / sigma_i^2 agrees with ||B_i||^2 and,
    where ||B_i||^2 differs from grad_mu G by much more than the noise, is rejected as an
    estimate of grad_mu G by the same 5-standard-error test that accepts the others."""
    with default_dtype():
        model = LinearModel()
        actions = sample(p, seed)
        s_mu, _ = scores(p, actions)
        terms = guidance_weights(model, actions, p.ctx) * s_mu[..., 0]  # [E, N]
        sq_norm = p.ctx.B.square().sum((1, 2))
        ok, ratio = within(terms, sq_norm)
        assert ok, ratio
        se = terms.std(0) / MC_SAMPLES**0.5
        separated = (sq_norm - p.grad_mu()[:, 0]).abs() > 4 * Z * se
        assume(bool(separated.any()))
        err = (terms.mean(0) - p.grad_mu()[:, 0]).abs()
        assert (err[separated] > Z * se[separated] + 1e-9).all()


# ----------------------------------------------------------------------------- what the trainer uses
@settings(max_examples=30, deadline=None, database=None)
@given(p=gaussians())
def test_library_mean_difference_weights_are_L_and_D(p: Gaussian) -> None:
    """``guidance(..., mean_action=mu)`` is L_i = g_i . (a_i - mu_i), and with
    ``exact_difference`` it is D_i (x affine in a_i), on the quadrature points; so by the
    table above the trainer's weight estimates grad_mu G (L and D) and grad_log_sigma G (D)."""
    with default_dtype():
        model = LinearModel()
        actions, w = gauss_hermite(p.mu, p.sigma)
        mu = p.mu.expand_as(actions)
        g = vector_guidance(model, actions, p.ctx)
        linear = guidance_weights(model, actions, p.ctx, mean_action=mu)
        torch.testing.assert_close(linear, (g * (actions - mu)).sum(-1), **EXACT)
        exact = guidance_weights(model, actions, p.ctx, exact_difference=True, mean_action=mu)
        torch.testing.assert_close(exact, difference_weights(model, actions, p.ctx, p.mu), **EXACT)
        s_mu, s_log_sigma = scores(p, actions)
        for weight in (linear, exact):
            torch.testing.assert_close(torch.einsum("e,en,enk->nk", w, weight, s_mu), p.grad_mu(), **EXACT)
        torch.testing.assert_close(torch.einsum("e,en,enk->nk", w, exact, s_log_sigma), p.grad_log_sigma(), **EXACT)


def test_exact_difference_without_a_mean_is_refused_for_continuous_actions() -> None:
    """``g - 1/2 ||z||^2`` is the change of d for a discrete option; for a continuous action it
    would be the effect of a unit step, not a difference reward, so the library refuses
    ``exact_difference`` unless it is given the reference action (the policy mean)."""
    with default_dtype():
        gen = torch.Generator().manual_seed(0)
        ctx = LinearContext(
            x0=torch.randn(3, generator=gen), B=torch.randn(2, 3, 2, generator=gen), x_ref=torch.randn(3, generator=gen)
        )
        actions = torch.randn(1, 2, 2, generator=gen)
        with pytest.raises(GuidanceError, match="pass mean_action"):
            guidance_weights(LinearModel(), actions, ctx, exact_difference=True)
