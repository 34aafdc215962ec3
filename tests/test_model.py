"""AnalyticalModel: generic influence against finite differences, guidance paths, errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from guidedmarl.analytical import AnalyticalModel, GuidanceError, SparseInfluence
from guidedmarl.guidance.weights import guidance_weights


@dataclass
class Ctx:
    w: Tensor  # [E, D, N * action_dim] linear map
    x_ref: Tensor  # [E, D]


class SmoothModel(AnalyticalModel):
    """x = tanh(W a) + 0.3 (W a)^2: nonlinear, every agent touches every component."""

    action_kind = "continuous"

    def system_state(self, actions: Tensor, context: Ctx) -> Tensor:
        lin = torch.einsum("edk,ek->ed", context.w, actions.reshape(actions.shape[0], -1))
        return torch.tanh(lin) + 0.3 * lin.square()

    def reference_state(self, context: Ctx) -> Tensor:
        return context.x_ref


def _smooth_problem(e: int = 2, n: int = 4, d: int = 3, adim: int = 1, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ctx = Ctx(
        w=torch.randn(e, d, n * adim, generator=gen, dtype=torch.float64) * 0.5,
        x_ref=torch.randn(e, d, generator=gen, dtype=torch.float64),
    )
    actions = torch.randn(e, n, adim, generator=gen, dtype=torch.float64)
    return SmoothModel(), ctx, actions


def _finite_difference_jacobian(model: AnalyticalModel, actions: Tensor, ctx, h: float = 1e-6) -> Tensor:
    """Central differences: [E, N, D, action_dim]."""
    e, n, adim = actions.shape
    x0 = model.system_state(actions, ctx)
    out = torch.zeros(e, n, x0.shape[1], adim, dtype=torch.float64)
    for i in range(n):
        for j in range(adim):
            step = torch.zeros_like(actions)
            step[:, i, j] = h
            out[:, i, :, j] = (model.system_state(actions + step, ctx) - model.system_state(actions - step, ctx)) / (2 * h)
    return out


@pytest.mark.parametrize("adim", [1, 2])
def test_generic_influence_matches_finite_differences(adim: int) -> None:
    torch.set_default_dtype(torch.float64)
    try:
        model, ctx, actions = _smooth_problem(adim=adim)
        z = model.influence(actions if adim > 1 else actions, ctx).dense(3)
        fd = _finite_difference_jacobian(model, actions, ctx)
        torch.testing.assert_close(z, fd if adim > 1 else fd.squeeze(-1), rtol=1e-6, atol=1e-8)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("adim", [1, 2])
def test_guidance_vjp_equals_influence_dot(adim: int) -> None:
    torch.set_default_dtype(torch.float64)
    try:
        model, ctx, actions = _smooth_problem(adim=adim, seed=3)
        x = model.state(actions, ctx)
        via_influence = model.influence(actions, ctx).dot(x - ctx.x_ref)
        g = guidance_weights(model, actions, ctx)
        torch.testing.assert_close(g, via_influence, rtol=1e-10, atol=1e-12)
        assert g.shape == ((2, 4, 2) if adim == 2 else (2, 4))
    finally:
        torch.set_default_dtype(torch.float32)


def test_discrete_generic_influence_is_the_state_change_of_the_chosen_option(bins) -> None:
    gen = torch.Generator().manual_seed(1)
    e, n, m = 3, 7, 4
    model = bins.BinsModel(num_actions=m)
    ctx = bins.BinsContext(sizes=torch.rand(e, n, generator=gen) + 0.5, capacity=torch.linspace(1, 2, m))
    actions = torch.randint(0, m, (e, n), generator=gen)
    z = model.influence(actions, ctx).dense(m)
    x = model.state(actions, ctx)
    for i in range(n):  # state change when agent i's job is taken away
        sizes = ctx.sizes.clone()
        sizes[:, i] = 0
        without = model.state(actions, bins.BinsContext(sizes=sizes, capacity=ctx.capacity))
        torch.testing.assert_close(z[:, i], x - without)
    g = guidance_weights(model, actions, ctx)
    torch.testing.assert_close(g, torch.einsum("end,ed->en", z, x - model.reference(ctx)))


def test_exact_difference_is_the_change_of_the_distance(bins) -> None:
    gen = torch.Generator().manual_seed(2)
    e, n, m = 2, 5, 3
    model = bins.BinsModel(num_actions=m)
    ctx = bins.BinsContext(sizes=torch.rand(e, n, generator=gen) + 0.5, capacity=torch.linspace(1, 2, m))
    actions = torch.randint(0, m, (e, n), generator=gen)
    x_ref = model.reference(ctx)
    d_all = model.distance(model.state(actions, ctx), x_ref)
    g = guidance_weights(model, actions, ctx, exact_difference=True)
    for i in range(n):
        sizes = ctx.sizes.clone()
        sizes[:, i] = 0
        x_without = model.state(actions, bins.BinsContext(sizes=sizes, capacity=ctx.capacity))
        torch.testing.assert_close(g[:, i], d_all - model.distance(x_without, x_ref), rtol=1e-4, atol=1e-5)


def test_sparse_influence_dot_and_norm() -> None:
    index = torch.tensor([[[0, 2], [1, 3]]])  # E=1, N=2, K=2
    value = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])
    z = SparseInfluence(index, value)
    v = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    torch.testing.assert_close(z.dot(v), torch.tensor([[70.0, 20.0]]))
    torch.testing.assert_close(z.squared_norm(), torch.tensor([[5.0, 10.0]]))
    torch.testing.assert_close(z.dense(4), torch.tensor([[[1.0, 0, 2.0, 0], [0, 3.0, 0, -1.0]]]))


def test_nan_in_reference_is_reported(bins) -> None:
    class Broken(bins.BinsModel):
        def reference_state(self, context):
            return torch.full((context.sizes.shape[0], context.capacity.numel()), float("nan"))

    model = Broken(num_actions=2)
    ctx = bins.BinsContext(sizes=torch.ones(1, 3), capacity=torch.ones(2))
    with pytest.raises(GuidanceError, match="reference_state returned 2 NaN"):
        guidance_weights(model, torch.zeros(1, 3, dtype=torch.long), ctx)


def test_discrete_model_rejects_float_actions_and_missing_action_count(bins) -> None:
    with pytest.raises(ValueError, match="num_actions"):
        bins.BinsModel()
    model = bins.BinsModel(num_actions=2)
    ctx = bins.BinsContext(sizes=torch.ones(1, 3), capacity=torch.ones(2))
    with pytest.raises(GuidanceError, match="integer"):
        guidance_weights(model, torch.zeros(1, 3), ctx)
