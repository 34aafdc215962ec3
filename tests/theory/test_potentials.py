"""The guidance weights for a model-defined, non-quadratic, weighted potential phi.

A model may replace the paper's d = 1/2 ||x - x_ref||^2 by any separable potential
phi(x) = sum_j w_j phi_j(x_j, x_ref_j) (``potential_terms``, ``component_weights``; the cloud
domain's capacity-aware potential is one). The theory carries over unchanged, and these
tests check it by exact enumeration of the joint actions (float64):

* the exact-difference weight is D_i = phi(x) - phi(x - z_i), computed straight from
  ``potential`` on the state without agent i's option;
* E[D_i grad_i log pi_i] = grad_i E[phi]: unbiased, for the closed-form and the generic
  (autograd / difference of terms) implementations alike;
* the first-order weight is g_i = < w * grad phi(x), z_i > (grad phi by autograd);
* a joint action a* that strictly minimises phi against unilateral deviations is a stable
  fixed point of guidance: near a* the descent direction -E[D grad log pi] lowers every
  deviation's logit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor

from guidedmarl.guidance.weights import guidance_weights
from guidedmarl.testing import (
    AffineContext,
    AffineDiscreteModel,
    all_joint_actions,
    default_dtype,
    joint_probability,
    softmax_score,
)

torch.set_num_threads(1)
EXACT = {"rtol": 1e-9, "atol": 1e-10}


class GenericPotentialModel(AffineDiscreteModel):
    """Overrides only ``potential_terms``: gradient by autograd, drop as a difference of terms."""

    def __init__(self, num_actions: int, weights: Tensor, knee: float, penalty: float) -> None:
        super().__init__(num_actions=num_actions)
        self.component_weights = weights
        self.knee, self.penalty = knee, penalty

    def potential_terms(self, x: Tensor, x_ref: Tensor) -> Tensor:
        u = x - x_ref
        return 0.5 * u.square() + 0.05 * u.square().square() + 0.5 * self.penalty * torch.relu(x - self.knee).square()


class ClosedFormPotentialModel(GenericPotentialModel):
    """The same potential with hand-written gradient and drop, and a closed-form influence."""

    closed_form_influence = True

    def potential_gradient(self, x: Tensor, x_ref: Tensor) -> Tensor:
        u = x - x_ref
        return u + 0.2 * u**3 + self.penalty * torch.relu(x - self.knee)

    def potential_drop(self, x: Tensor, x_ref: Tensor, step: Tensor) -> Tensor:
        return self.potential_terms(x, x_ref) - self.potential_terms(x - step, x_ref)

    def influence(self, actions: Tensor, context: AffineContext):  # noqa: ANN201
        from guidedmarl.analytical.model import SparseInfluence

        e, n = actions.shape
        d = context.effect.shape[-1]
        value = context.effect[torch.arange(n), actions]  # [E, N, D]
        return SparseInfluence(torch.arange(d).expand(e, n, d), value)


@dataclasses.dataclass
class Problem:
    model: GenericPotentialModel
    ctx: AffineContext
    theta: Tensor


@st.composite
def problems(draw: st.DrawFn, closed_form: bool | None = None) -> Problem:
    n, a, d = draw(st.integers(1, 3)), draw(st.integers(2, 3)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cls = (ClosedFormPotentialModel if draw(st.booleans()) else GenericPotentialModel) if closed_form is None else (
        ClosedFormPotentialModel if closed_form else GenericPotentialModel
    )
    with default_dtype():
        weights = torch.tensor(rng.uniform(0.2, 3.0, d))
        model = cls(a, weights, knee=float(rng.uniform(-0.5, 1.0)), penalty=float(rng.uniform(0.0, 20.0)))
        ctx = AffineContext(
            x0=torch.tensor(rng.standard_normal(d)),
            effect=torch.tensor(rng.standard_normal((n, a, d))),
            x_ref=torch.tensor(rng.standard_normal(d)),
        )
        theta = torch.tensor(draw(st.floats(0.0, 2.5)) * rng.standard_normal((n, a)))
    return Problem(model, ctx, theta)


def _enumerated(p: Problem) -> tuple[Tensor, AffineContext]:
    n, a, _ = p.ctx.effect.shape
    actions = all_joint_actions(n, a)
    return actions, p.ctx.for_envs(actions.shape[0])


@settings(max_examples=40, deadline=None, database=None)
@given(p=problems())
def test_exact_difference_is_the_drop_of_the_potential_without_the_agent(p: Problem) -> None:
    with default_dtype():
        actions, ctx = _enumerated(p)
        x, x_ref = p.model.state(actions, ctx), p.model.reference(ctx)
        n = actions.shape[1]
        chosen = p.ctx.effect[torch.arange(n), actions]  # z_i = C_i[a_i], [E, N, D]
        without = x.unsqueeze(1) - chosen  # the state without agent i's option, [E, N, D]
        expected = p.model.potential(x, x_ref).unsqueeze(1) - p.model.potential(without, x_ref.unsqueeze(1))
        torch.testing.assert_close(guidance_weights(p.model, actions, ctx, exact_difference=True), expected, **EXACT)


@settings(max_examples=40, deadline=None, database=None)
@given(p=problems())
def test_exact_difference_is_unbiased_for_a_non_quadratic_potential(p: Problem) -> None:
    with default_dtype():
        actions, ctx = _enumerated(p)
        phi = p.model.potential(p.model.state(actions, ctx), p.model.reference(ctx))
        theta = p.theta.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((joint_probability(theta, actions) * phi).sum(), theta)
        weight = guidance_weights(p.model, actions, ctx, exact_difference=True)
        estimate = torch.einsum(
            "e,en,ena->na", joint_probability(p.theta, actions), weight, softmax_score(p.theta, actions)
        )
        torch.testing.assert_close(estimate, grad, rtol=1e-9, atol=1e-10 * max(1.0, float(grad.abs().max())))


@settings(max_examples=40, deadline=None, database=None)
@given(p=problems())
def test_first_order_weight_is_the_weighted_potential_gradient_along_z(p: Problem) -> None:
    with default_dtype():
        actions, ctx = _enumerated(p)
        x = p.model.state(actions, ctx).requires_grad_(True)
        (grad_phi,) = torch.autograd.grad(p.model.potential(x, p.model.reference(ctx)).sum(), x)
        chosen = p.ctx.effect[torch.arange(actions.shape[1]), actions]
        expected = torch.einsum("ed,end->en", grad_phi, chosen)
        torch.testing.assert_close(guidance_weights(p.model, actions, ctx), expected, **EXACT)


@settings(max_examples=30, deadline=None, database=None)
@given(p=problems())
def test_a_strict_minimum_of_the_potential_is_a_stable_fixed_point_of_guidance(p: Problem) -> None:
    with default_dtype():
        actions, ctx = _enumerated(p)
        n, a, _ = p.ctx.effect.shape
        phi = p.model.potential(p.model.state(actions, ctx), p.model.reference(ctx))
        star = actions[int(phi.argmin())]
        gaps = torch.empty(n, a, dtype=torch.float64)
        for i in range(n):
            for option in range(a):
                joint = star.clone()
                joint[i] = option
                gaps[i, option] = phi[(actions == joint).all(1)].squeeze() - phi.min()
        deviation = torch.nn.functional.one_hot(star, a) == 0
        assume(bool((gaps[deviation] > 1e-3 * max(1.0, float(phi.abs().max()))).all()))
        beta = float(np.log(8.0 * n * a * float(phi.max() - phi.min()) / float(gaps[deviation].min()))) + 2.0
        theta = beta * torch.nn.functional.one_hot(star, a).to(torch.float64)
        weight = guidance_weights(p.model, actions, ctx, exact_difference=True)
        descent = -torch.einsum("e,en,ena->na", joint_probability(theta, actions), weight, softmax_score(theta, actions))
        assert bool((descent[deviation] < 0).all()), descent
