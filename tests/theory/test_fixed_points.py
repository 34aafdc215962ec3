"""Fixed points of the augmented update (1 - alpha) grad J - alpha grad G.

Cooperative games with a team reward R(x) = -1/2 (x - x*)^T Q (x - x*) (Q positive
definite: a general concave quadratic maximised at x*), an affine state map and, unless
stated otherwise, a reference that is reachable and aligned: x_ref = x* and some joint
action (discrete) or mean action (continuous) attains x*.

Discrete (softmax policies, exact enumeration of the joint actions):
* the library's guidance vanishes at a* (g_i = 0 for every agent);
* near-deterministic policies at a* (logits beta e_{a*}): grad J, grad G and the library
  estimator's expectation are O(e^-beta) (bound: max|f| N (A - 1) e^-beta);
* a* is a stable fixed point of the augmented update with the exact-difference weight for
  every alpha in [0, 1): the ascent direction lowers the probability of every deviation;
* the first-order weight g_i (the paper's) can DESTABILISE the aligned optimum when alpha
  is large: its expectation is the gradient of G + sum_i E[1/2 ||z_i||^2] (see
  test_unbiasedness.py), which prefers options with small ||z_i||;
* with a misaligned reference (x_ref = the state of a unilateral deviation), g_i != 0 at a*
  and a* stops being stable once alpha exceeds an explicit threshold;
* J's non-optimal (mixed) stationary points are not stationary for the augmented update in
  general; they are when R = -d (then grad G = -grad J everywhere).

Continuous (Gaussian policies, linear map; closed forms): the stationary set of the
augmented update is {mu : xbar(mu) = x*} for every alpha in [0, 1] when the reference is
aligned; with a misaligned reference grad G(mu*) != 0 and the stationary point moves
(J strictly worse, monotonically in alpha).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor

from guidedmarl.testing import AffineContext, AffineDiscreteModel, LinearContext, LinearContinuousModel as LinearModel, default_dtype
from guidedmarl.guidance.weights import guidance_weights

torch.set_num_threads(1)

EXACT = {"rtol": 1e-9, "atol": 1e-10}
ALPHAS = (0.0, 0.3, 0.6, 0.9, 0.99)


# ============================================================================== discrete
@dataclass
class Game:
    model: AffineDiscreteModel
    ctx: AffineContext
    optimum: Tensor  # a*, [N] long, x(a*) = x*
    target: Tensor  # x*, [D]
    Q: Tensor  # [D, D] positive definite

    @property
    def sizes(self) -> tuple[int, int, int]:
        n, a, d = self.ctx.effect.shape
        return n, a, d

    def reward(self, x: Tensor) -> Tensor:
        diff = x - self.target
        return -0.5 * torch.einsum("ed,dc,ec->e", diff, self.Q, diff)

    def with_reference(self, x_ref: Tensor) -> Game:
        return dataclasses.replace(self, ctx=dataclasses.replace(self.ctx, x_ref=x_ref))


@st.composite
def games(draw: st.DrawFn, min_agents: int = 1, isotropic: bool | None = None, shrunk: bool = False) -> Game:
    """A random game with a reachable optimum a* (x(a*) = x*) and reward weight Q (the
    identity when ``isotropic``, so that R = -d). With ``shrunk`` (drawn), agent 0 gets an
    option that is a shortened copy of its optimal option plus noise."""
    n, a, d = draw(st.integers(min_agents, 4)), draw(st.integers(2, 3)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    effect = rng.standard_normal((n, a, d))
    optimum = rng.integers(0, a, n)
    if shrunk and draw(st.booleans()):
        other = (optimum[0] + 1) % a
        effect[0, other] = rng.uniform(0.2, 0.8) * effect[0, optimum[0]] + 0.1 * rng.standard_normal(d)
    target = rng.standard_normal(d)
    x0 = target - effect[np.arange(n), optimum].sum(0)  # x(a*) = x*: reachable
    iso = draw(st.booleans()) if isotropic is None else isotropic
    if iso:
        q = np.eye(d)
    else:
        m = rng.standard_normal((d, d))
        q = m @ m.T + 0.1 * np.eye(d)
    ctx = AffineContext(torch.tensor(x0), torch.tensor(effect), torch.tensor(target))
    return Game(AffineDiscreteModel(num_actions=a), ctx, torch.tensor(optimum), torch.tensor(target), torch.tensor(q))


def all_joint_actions(n: int, a: int) -> Tensor:
    return torch.tensor(list(itertools.product(range(a), repeat=n)), dtype=torch.long).reshape(-1, n)


def joint_log_prob(theta: Tensor, actions: Tensor) -> Tensor:
    return torch.log_softmax(theta, -1).gather(1, actions.T).sum(0)


def softmax_score(theta: Tensor, actions: Tensor) -> Tensor:
    pi = torch.softmax(theta, -1)
    return torch.nn.functional.one_hot(actions, pi.shape[1]).to(pi.dtype) - pi


@dataclass
class Enumerated:
    actions: Tensor  # [E, N]
    x: Tensor  # [E, D]
    reward: Tensor  # [E]
    dist: Tensor  # [E], d(x, x_ref)
    first_order: Tensor  # [E, N] library guidance
    exact: Tensor  # [E, N] library guidance, exact_difference=True


def enumerate_game(game: Game) -> Enumerated:
    n, a, _ = game.sizes
    actions = all_joint_actions(n, a)
    ctx = dataclasses.replace(game.ctx, num_envs=actions.shape[0])
    x = game.model.state(actions, ctx)
    return Enumerated(
        actions=actions,
        x=x,
        reward=game.reward(x),
        dist=game.model.distance(x, game.model.reference(ctx)),
        first_order=guidance_weights(game.model, actions, ctx),
        exact=guidance_weights(game.model, actions, ctx, exact_difference=True),
    )


def gradient_of_mean(values: Tensor, theta: Tensor, actions: Tensor) -> Tensor:
    """grad_theta sum_a p_theta(a) values(a) (autograd through the joint probabilities)."""
    th = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((joint_log_prob(th, actions).exp() * values).sum(), th)
    return grad


def estimator_mean(weight: Tensor, theta: Tensor, actions: Tensor) -> Tensor:
    """E[w_i grad_i log pi_i] (exact), ``[N, A]``."""
    prob = joint_log_prob(theta, actions).exp()
    return torch.einsum("e,en,ena->na", prob, weight, softmax_score(theta, actions))


def peaked_logits(game: Game, beta: float) -> Tensor:
    n, a, _ = game.sizes
    return beta * torch.nn.functional.one_hot(game.optimum, a).to(torch.float64)


def deviation_mask(game: Game) -> Tensor:
    """[N, A] True where a != a*_i."""
    n, a, _ = game.sizes
    return torch.nn.functional.one_hot(game.optimum, a) == 0


def unilateral_values(game: Game, en: Enumerated, values: Tensor) -> Tensor:
    """values(a, a*_-i) for every agent i and option a, ``[N, A]`` (the value at a* where
    a = a*_i). ``values`` is ``[E]`` (a team quantity) or ``[E, N]`` (agent i's column is used)."""
    n, a, _ = game.sizes
    out = torch.empty(n, a, dtype=values.dtype)
    for i in range(n):
        for option in range(a):
            joint = game.optimum.clone()
            joint[i] = option
            row = values[(en.actions == joint).all(1)].squeeze(0)
            out[i, option] = row[i] if values.dim() == 2 else row
    return out


def stable_beta(game: Game, en: Enumerated, utility: Tensor) -> float:
    """A beta for which the sign of every deviation component of grad E[utility] is that of
    utility(dev) - utility(a*) (proof in docs/theory_tests.md): sum_j eps_j <= N (A-1) e^-beta
    times (gap + spread) must stay below the smallest unilateral gap."""
    n, a, _ = game.sizes
    dev = unilateral_values(game, en, utility)
    star = utility[(en.actions == game.optimum).all(1)].squeeze(0)
    gaps = (dev - star).abs()[deviation_mask(game)]
    spread = (utility - star).abs().max()
    return math.log(n * (a - 1) * 4.0 * float((gaps.max() + spread) / gaps.min())) + 1.0


@settings(max_examples=30, deadline=None, database=None)
@given(game=games())
def test_guidance_vanishes_at_the_reachable_aligned_optimum(game: Game) -> None:
    with default_dtype():
        n, a, _ = game.sizes
        ctx = game.ctx
        star = game.optimum.unsqueeze(0)
        torch.testing.assert_close(game.model.state(star, ctx)[0], game.target, **EXACT)
        torch.testing.assert_close(guidance_weights(game.model, star, ctx), torch.zeros(1, n, dtype=torch.float64), **EXACT)
        # the exact-difference weight is -1/2 ||z_i||^2 there (removing agent i moves x away
        # from x*): it does not vanish, only its expectation times the score does
        half_sq = 0.5 * game.ctx.effect[torch.arange(n), game.optimum].square().sum(-1)
        torch.testing.assert_close(guidance_weights(game.model, star, ctx, exact_difference=True)[0], -half_sq, **EXACT)


@settings(max_examples=25, deadline=None, database=None)
@given(game=games())
def test_gradients_vanish_for_near_deterministic_policies_at_the_optimum(game: Game) -> None:
    """|grad J|, |grad G|, |E[g grad log pi]| <= max|f| N (A-1) e^-beta with f = -R, d, g
    (each f vanishes at a*; P(a != a*) <= N (A-1) e^-beta; |e_a - pi| <= 1).
    Softmax saturation alone makes these vanish; the bound needs f(a*) = 0."""
    with default_dtype():
        n, a, _ = game.sizes
        en = enumerate_game(game)
        for beta in (3.0, 8.0, 16.0, 30.0):
            theta = peaked_logits(game, beta)
            rate = n * (a - 1) * math.exp(-beta)
            grad_j = gradient_of_mean(en.reward, theta, en.actions)
            grad_g = gradient_of_mean(en.dist, theta, en.actions)
            first = estimator_mean(en.first_order, theta, en.actions)
            exact = estimator_mean(en.exact, theta, en.actions)
            torch.testing.assert_close(exact, grad_g, rtol=1e-9, atol=1e-14)
            assert grad_j.abs().max() <= en.reward.abs().max() * rate + 1e-15
            assert grad_g.abs().max() <= en.dist.max() * rate + 1e-15
            assert first.abs().max() <= en.first_order.abs().max() * rate + 1e-15
            for alpha in ALPHAS:
                augmented = (1 - alpha) * grad_j - alpha * grad_g
                assert augmented.abs().max() <= max(en.reward.abs().max(), en.dist.max()) * rate + 1e-15


@settings(max_examples=30, deadline=None, database=None)
@given(game=games())
def test_aligned_optimum_is_stable_for_every_alpha_with_the_exact_difference_weight(game: Game) -> None:
    """Near a* the augmented ascent direction (1 - alpha) E[R grad log pi] - alpha E[w grad log pi],
    w = the library's exact-difference weight, lowers the logit of every deviation."""
    with default_dtype():
        en = enumerate_game(game)
        dev = deviation_mask(game)
        gaps = unilateral_values(game, en, en.reward)[dev]  # R(dev) - R(a*), R(a*) = 0
        assume(bool((gaps.abs() > 1e-6).all()))  # a* a strict optimum against unilateral deviations
        for alpha in ALPHAS:
            utility = (1 - alpha) * en.reward - alpha * en.dist
            theta = peaked_logits(game, stable_beta(game, en, utility))
            ascent = (1 - alpha) * estimator_mean(en.reward[:, None].expand_as(en.exact), theta, en.actions) - (
                alpha * estimator_mean(en.exact, theta, en.actions)
            )
            torch.testing.assert_close(
                ascent, gradient_of_mean(utility, theta, en.actions), rtol=1e-8, atol=1e-9 * float(ascent.abs().max())
            )
            assert (ascent[dev] < 0).all(), (alpha, ascent)


@settings(max_examples=40, deadline=None, database=None)
@given(game=games(shrunk=True))
def test_first_order_weight_can_destabilise_the_aligned_optimum(game: Game) -> None:
    """The first-order ascent is the exact gradient of E[U] with the surrogate utility
    U = (1 - alpha) R - alpha (d + sum_j 1/2 ||z_j||^2). For a deviation a of agent i,
    U(dev) - U(a*) = -(1 - alpha) u + alpha v with u = -R(dev) > 0 and
    v = -g_i(dev) = <C_i[a*_i] - C_i[a], C_i[a]>. When v > 0 (first-order guidance claims
    the deviation helps, although d grows), the update pushes toward the deviation once
    alpha > u / (u + v): the aligned, reachable optimum is no longer a fixed point."""
    with default_dtype():
        n, a, _ = game.sizes
        en = enumerate_game(game)
        dev = deviation_mask(game)
        g_dev = unilateral_values(game, en, en.first_order)
        r_dev = unilateral_values(game, en, en.reward)
        candidates = dev & (g_dev < -1e-3) & (r_dev < -1e-6)
        assume(bool(candidates.any()))
        i, option = (int(v) for v in candidates.nonzero()[0])
        u, v = float(-r_dev[i, option]), float(-g_dev[i, option])
        threshold = u / (u + v)
        effects = game.ctx.effect[torch.arange(n), en.actions]  # [E, N, D]
        penalty = 0.5 * effects.square().sum((1, 2))  # sum_j 1/2 ||z_j||^2 per joint action
        for alpha, sign in ((0.5 * threshold, -1.0), (0.5 * (1.0 + threshold), 1.0)):
            surrogate = (1 - alpha) * en.reward - alpha * (en.dist + penalty)
            star = surrogate[(en.actions == game.optimum).all(1)]
            assume(bool((unilateral_values(game, en, surrogate) - star).abs()[dev].min() > 1e-9))
            theta = peaked_logits(game, stable_beta(game, en, surrogate))
            ascent = (1 - alpha) * estimator_mean(en.reward[:, None].expand_as(en.first_order), theta, en.actions) - (
                alpha * estimator_mean(en.first_order, theta, en.actions)
            )
            torch.testing.assert_close(
                ascent, gradient_of_mean(surrogate, theta, en.actions), rtol=1e-8, atol=1e-9 * float(ascent.abs().max())
            )
            assert sign * ascent[i, option] > 0, (alpha, threshold, ascent)


@settings(max_examples=30, deadline=None, database=None)
@given(game=games(), data=st.data())
def test_misaligned_reference_moves_the_fixed_point(game: Game, data: st.DataObject) -> None:
    """x_ref = x(b) for a unilateral deviation b of agent j (reachable, not aligned with R):
    the library's g_j(a*) = <x* - x_ref, C_j[a*_j]> is generally non-zero, and near a* the
    exact-difference augmented update pushes toward b exactly when
    alpha > u / (u + d*) with u = -R(x(b)), d* = d(x*, x_ref) (checked on both sides)."""
    with default_dtype():
        n, a, _ = game.sizes
        j = data.draw(st.integers(0, n - 1))
        b_j = data.draw(st.sampled_from([o for o in range(a) if o != int(game.optimum[j])]))
        b = game.optimum.clone()
        b[j] = b_j
        x_b = game.model.state(b.unsqueeze(0), game.ctx)[0]
        moved = game.with_reference(x_b)
        g_star = guidance_weights(moved.model, game.optimum.unsqueeze(0), moved.ctx)[0]
        expected_g = game.ctx.effect[torch.arange(n), game.optimum] @ (game.target - x_b)
        torch.testing.assert_close(g_star, expected_g, **EXACT)
        assume(float(g_star.abs().max()) > 1e-3)  # guidance is active at the cooperative optimum

        en = enumerate_game(moved)
        u = float(-game.reward(x_b.unsqueeze(0))[0])
        d_star = float(moved.model.distance(game.target, x_b))
        assume(u > 1e-6 and d_star > 1e-6)
        threshold = u / (u + d_star)
        star = (en.actions == game.optimum).all(1)
        for alpha, sign in ((0.5 * threshold, -1.0), (0.5 * (1.0 + threshold), 1.0)):
            utility = (1 - alpha) * en.reward - alpha * en.dist
            gaps = (unilateral_values(moved, en, utility) - utility[star]).abs()[deviation_mask(moved)]
            assume(bool(gaps.min() > 1e-9))
            theta = peaked_logits(moved, stable_beta(moved, en, utility))
            ascent = (1 - alpha) * estimator_mean(en.reward[:, None].expand_as(en.exact), theta, en.actions) - (
                alpha * estimator_mean(en.exact, theta, en.actions)
            )
            assert sign * ascent[j, b_j] > 0, (alpha, threshold, ascent)


@settings(max_examples=25, deadline=None, database=None)
@given(game=games(min_agents=2), data=st.data())
def test_mixed_stationary_points_of_j_are_shared_only_when_r_is_minus_d(game: Game, data: st.DataObject) -> None:
    """Two agents, two options: J has a mixed stationary point (p, q) (each agent indifferent)
    when the team game has two pure equilibria. grad J = 0 there; grad G = 0 there too when
    R = -d (Q = I, x_ref = x*: then grad G = -grad J everywhere), but not in general."""
    with default_dtype():
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        d = game.sizes[2]
        # a coordination game: x(1, 1) = x*, x(0, 0) = x* + w close to it, and the two
        # miscoordinated joint actions far away (x(1, 0) = x(0, 0) + v_1, x(0, 1) = x(0, 0) + v_2)
        w = 0.3 * rng.standard_normal(d)
        v1 = 2.0 * rng.standard_normal(d)
        v2 = -w - v1
        base = rng.standard_normal((2, d))
        effect = torch.tensor(np.stack([[base[0], base[0] + v1], [base[1], base[1] + v2]]))
        x0 = game.target + torch.tensor(w - base[0] - base[1])
        ctx = AffineContext(x0, effect, game.target)  # a* = (1, 1)
        small = Game(AffineDiscreteModel(num_actions=2), ctx, torch.tensor([1, 1]), game.target, game.Q)
        en = enumerate_game(small)
        u = {tuple(int(v) for v in act): float(r) for act, r in zip(en.actions, en.reward, strict=True)}
        den_q = (u[1, 0] - u[0, 0]) - (u[1, 1] - u[0, 1])
        den_p = (u[0, 1] - u[0, 0]) - (u[1, 1] - u[1, 0])
        assume(abs(den_q) > 1e-6 and abs(den_p) > 1e-6)
        q = (u[1, 0] - u[0, 0]) / den_q  # P(a_2 = 1) making agent 1 indifferent
        p = (u[0, 1] - u[0, 0]) / den_p  # P(a_1 = 1) making agent 2 indifferent
        assume(0.05 < p < 0.95 and 0.05 < q < 0.95)
        theta = torch.tensor([[0.0, math.log(p / (1 - p))], [0.0, math.log(q / (1 - q))]])
        grad_j = gradient_of_mean(en.reward, theta, en.actions)
        grad_g = estimator_mean(en.exact, theta, en.actions)
        torch.testing.assert_close(grad_g, gradient_of_mean(en.dist, theta, en.actions), **EXACT)
        scale = float(en.reward.abs().max() + en.dist.max())
        assert grad_j.abs().max() <= 1e-10 * scale
        if bool((game.Q == torch.eye(d, dtype=game.Q.dtype)).all()):
            torch.testing.assert_close(grad_g, -grad_j, **EXACT)
            assert grad_g.abs().max() <= 1e-10 * scale
        else:
            assume(float(grad_g.abs().max()) > 1e-4 * scale)
            # the augmented update moves away from J's stationary point for any alpha > 0
            assert ((1 - 0.5) * grad_j - 0.5 * grad_g).abs().max() > 1e-5 * scale


# ============================================================================== continuous
@dataclass
class ContinuousGame:
    ctx: LinearContext
    mu_star: Tensor  # [N, k], xbar(mu*) = x*
    target: Tensor  # x*
    Q: Tensor

    @property
    def matrix(self) -> Tensor:
        """B as one [D, N k] matrix (mu flattened agent-major)."""
        n, d, k = self.ctx.B.shape
        return self.ctx.B.permute(1, 0, 2).reshape(d, n * k)

    def xbar(self, mu: Tensor) -> Tensor:
        return self.ctx.x0 + self.matrix @ mu.reshape(-1)

    def grad_j(self, mu: Tensor) -> Tensor:
        """grad_mu E[R] = -B^T Q (xbar - x*) (the sigma terms of E[R] do not depend on mu)."""
        return -(self.matrix.T @ self.Q @ (self.xbar(mu) - self.target)).reshape(mu.shape)

    def grad_g(self, mu: Tensor) -> Tensor:
        return (self.matrix.T @ (self.xbar(mu) - self.ctx.x_ref)).reshape(mu.shape)

    def augmented_stationary_point(self, alpha: float) -> Tensor:
        """Minimum-norm solution of (1 - alpha) grad J - alpha grad G = 0, i.e. of
        B^T M B mu = B^T ((1 - alpha) Q x* + alpha x_ref - M x0), M = (1 - alpha) Q + alpha I."""
        metric = (1 - alpha) * self.Q + alpha * torch.eye(self.Q.shape[0], dtype=self.Q.dtype)
        lhs = self.matrix.T @ metric @ self.matrix
        rhs = self.matrix.T @ ((1 - alpha) * self.Q @ self.target + alpha * self.ctx.x_ref - metric @ self.ctx.x0)
        return (torch.linalg.pinv(lhs, hermitian=True, rtol=1e-10) @ rhs).reshape(self.mu_star.shape)

    def reward(self, mu: Tensor) -> Tensor:
        """R(xbar(mu)); E[R] differs by a constant in sigma only."""
        diff = self.xbar(mu) - self.target
        return -0.5 * diff @ self.Q @ diff


@st.composite
def continuous_games(draw: st.DrawFn) -> ContinuousGame:
    n, k, d = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    B = rng.standard_normal((n, d, k))
    mu_star = rng.standard_normal((n, k))
    target = rng.standard_normal(d)
    x0 = target - np.einsum("ndk,nk->d", B, mu_star)
    m = rng.standard_normal((d, d))
    ctx = LinearContext(torch.tensor(x0), torch.tensor(B), torch.tensor(target))
    return ContinuousGame(ctx, torch.tensor(mu_star), torch.tensor(target), torch.tensor(m @ m.T + 0.1 * np.eye(d)))


def library_guidance_at(game: ContinuousGame, mu: Tensor) -> Tensor:
    """The library's g at the deterministic action a = mu (= E[g] = grad_mu G for any sigma,
    since g is affine in a), ``[N, k]``."""
    g = guidance_weights(LinearModel(), mu.unsqueeze(0), game.ctx)[0]
    return g.reshape(mu.shape)


CONTINUOUS_ALPHAS = (0.0, 0.3, 0.6, 0.9, 0.99, 1.0)


@settings(max_examples=40, deadline=None, database=None)
@given(game=continuous_games())
def test_continuous_aligned_reference_keeps_the_stationary_set_for_every_alpha(game: ContinuousGame) -> None:
    """Stationary set of the augmented update = {mu : B mu = x* - x0} = argmax J, for every
    alpha in [0, 1]: B^T M B v = 0 iff B v = 0 for positive definite M, because
    v^T B^T M B v >= lambda_min(M) ||B v||^2 (checked on random v and on null-space v)."""
    with default_dtype():
        scale = 1.0 + float(game.matrix.abs().max()) ** 2 * (1.0 + float(game.Q.abs().max()))
        zero = torch.zeros_like(game.mu_star)
        torch.testing.assert_close(game.xbar(game.mu_star), game.target, **EXACT)
        torch.testing.assert_close(library_guidance_at(game, game.mu_star), zero, rtol=0, atol=1e-10 * scale)
        torch.testing.assert_close(game.grad_j(game.mu_star), zero, rtol=0, atol=1e-10 * scale)
        gen = torch.Generator().manual_seed(0)
        directions = torch.randn(game.matrix.shape[1], 4, generator=gen, dtype=torch.float64)
        _, _, vh = torch.linalg.svd(game.matrix)
        directions = torch.cat([directions, vh[game.matrix.shape[0] :].T], dim=1)  # + null(B) if N k > D
        for alpha in CONTINUOUS_ALPHAS:
            metric = (1 - alpha) * game.Q + alpha * torch.eye(game.Q.shape[0], dtype=game.Q.dtype)
            lam_min = float(torch.linalg.eigvalsh(metric).min())
            assert lam_min > 0
            image = game.matrix @ directions
            quadratic = (image * (metric @ image)).sum(0)
            assert (quadratic >= lam_min * image.square().sum(0) * (1 - 1e-9) - 1e-12).all()
            mu = game.augmented_stationary_point(alpha)
            torch.testing.assert_close(game.xbar(mu), game.target, rtol=0, atol=1e-8 * scale)
            torch.testing.assert_close(game.grad_j(mu), zero, rtol=0, atol=1e-8 * scale)
            torch.testing.assert_close(library_guidance_at(game, mu), zero, rtol=0, atol=1e-8 * scale)


@settings(max_examples=40, deadline=None, database=None)
@given(game=continuous_games(), data=st.data())
def test_continuous_misaligned_reference_moves_the_stationary_point(game: ContinuousGame, data: st.DataObject) -> None:
    """x_ref != x*: at the cooperative optimum mu*, grad J = 0 but the library's guidance
    g(mu*) = B^T (x* - x_ref) != 0, so mu* is not stationary for alpha > 0; the augmented
    stationary point trades J for G (J strictly worse, monotonically in alpha)."""
    with default_dtype():
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        x_ref = game.target + torch.tensor(rng.standard_normal(game.target.shape[0]))
        moved = dataclasses.replace(game, ctx=dataclasses.replace(game.ctx, x_ref=x_ref))
        g_star = library_guidance_at(moved, moved.mu_star)
        torch.testing.assert_close(g_star, moved.grad_g(moved.mu_star), **EXACT)
        assume(float(g_star.abs().max()) > 1e-2)
        for alpha in (0.3, 0.6, 0.9):
            augmented = (1 - alpha) * moved.grad_j(moved.mu_star) - alpha * g_star
            assert augmented.abs().max() >= alpha * 1e-2 - 1e-12  # mu* is not a fixed point
        rewards, distances = [], []
        for alpha in CONTINUOUS_ALPHAS:
            mu = moved.augmented_stationary_point(alpha)
            residual = (1 - alpha) * moved.grad_j(mu) - alpha * library_guidance_at(moved, mu)
            assert residual.abs().max() <= 1e-8 * (1.0 + float(moved.grad_g(moved.mu_star).abs().max()))
            rewards.append(float(moved.reward(mu)))
            distances.append(0.5 * float((moved.xbar(mu) - x_ref).square().sum()))
        assert abs(rewards[0]) <= 1e-12 * (1.0 + float(moved.Q.abs().max()))  # alpha = 0: the optimum
        assert all(r < -1e-14 for r in rewards[1:])  # strictly worse for alpha > 0
        assert all(b <= a + 1e-10 for a, b in zip(rewards, rewards[1:]))  # J falls with alpha
        assert all(b <= a + 1e-10 for a, b in zip(distances, distances[1:]))  # G falls with alpha
