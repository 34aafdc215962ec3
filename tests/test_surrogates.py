"""Surrogate models for the stress test: each breaks exactly the assumption it names."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from guidedmarl import ConfigError, RunConfig, get_domain
from guidedmarl.analytical.surrogates import (
    BiasedConfig,
    BiasedReference,
    NoisyReference,
    RoundedState,
    wrap_surrogate,
)
from guidedmarl.config import build_config
from guidedmarl.experiment import build
from guidedmarl.guidance.weights import guidance_weights

SMALL = {"horizon": 6, "warmup": 3}


@pytest.fixture(scope="module")
def cloud_step():
    """A cloud model with the context and random actions of one step (E=2, N=12)."""
    domain = get_domain("cloud").from_config(12, SMALL)
    env = domain.make_env(2)
    env.reset([5, 6])
    env.step(torch.zeros(2, 12, dtype=torch.long))
    actions = torch.randint(0, env.spec.num_actions, (2, 12), generator=torch.Generator().manual_seed(0))
    return domain.make_model(), env.model_context(), actions


def test_biased_reference_is_shifted_by_beta_spreads(cloud_step) -> None:
    model, ctx, _ = cloud_step
    exact = model.reference(ctx)
    for direction in ("uniform", "random"):
        biased = BiasedReference(model, beta=0.3, direction=direction, seed=1).reference(ctx)
        shift = biased - exact
        spread = exact.std(dim=-1, keepdim=True, unbiased=False)
        torch.testing.assert_close(shift.square().mean(-1, keepdim=True).sqrt(), 0.3 * spread, rtol=1e-4, atol=1e-7)
    same = BiasedReference(model, beta=0.0, direction="random", seed=1).reference(ctx)
    torch.testing.assert_close(same, exact)


def test_noisy_reference_is_unbiased_and_fresh(cloud_step) -> None:
    model, ctx, _ = cloud_step
    noisy = NoisyReference(model, sigma=0.5, seed=2)
    draws = torch.stack([noisy.reference(ctx) for _ in range(400)])
    exact = model.reference(ctx)
    assert not torch.equal(draws[0], draws[1])
    spread = exact.std(dim=-1, keepdim=True, unbiased=False)
    z = (draws.mean(0) - exact) / (0.5 * spread / 400**0.5)
    assert z.abs().max() < 5.0  # mean of the noise is zero (5 standard errors)
    ratio = (draws - exact).std(0) / (0.5 * spread)
    assert ((ratio > 0.8) & (ratio < 1.2)).all()


def test_rounded_state_is_piecewise_constant_and_uses_discrete_differences(cloud_step) -> None:
    model, ctx, actions = cloud_step
    rounded = RoundedState(model, step=0.25)
    x = rounded.state(actions, ctx)
    torch.testing.assert_close(x, torch.round(model.state(actions, ctx) / 0.25) * 0.25)
    # closed form: z_i is the change of the rounded state caused by agent i's job
    z = rounded.influence(actions, ctx).dense(x.shape[1])
    for i in range(3):
        ctx_without = type(ctx)(**{**ctx.__dict__, "demand": ctx.demand.clone()})
        ctx_without.demand[:, i] = 0
        torch.testing.assert_close(z[:, i], x - rounded.state(actions, ctx_without))
    # without a closed form the autograd derivative of a rounded map is zero
    class Generic(RoundedState):
        pass

    generic = Generic(model, step=0.25)
    generic.closed_form_influence = False  # type: ignore[misc]
    assert torch.count_nonzero(guidance_weights(generic, actions, ctx)) == 0


def test_surrogates_keep_the_reference_exogenous(cloud_step) -> None:
    model, ctx, actions = cloud_step
    for wrapped in (BiasedReference(model, 1.0, "random", 0), NoisyReference(model, 1.0, 0), RoundedState(model, 0.1)):
        assert not wrapped.reference(ctx).requires_grad
        assert guidance_weights(wrapped, actions, ctx).shape == actions.shape


def test_surrogate_config_is_validated_and_applied() -> None:
    with pytest.raises(ConfigError, match="learner.estimator: surrogate.biased.beta: Input should be greater"):
        build_config({"domain": "cloud", "learner": {"estimator": {"surrogate": {"kind": "biased", "beta": -1}}}})
    # configs written before learners were plug-ins (a `guidance` section) still load
    legacy = build_config({"domain": "cloud", "guidance": {"surrogate": {"kind": "noisy"}, "exact_difference": True}})
    assert legacy.learner.estimator.surrogate.kind == "noisy"  # type: ignore[attr-defined]
    assert legacy.learner.estimator.weight == "exact_difference"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        BiasedConfig(direction="sideways")  # type: ignore[arg-type]
    assert wrap_surrogate("model", None, 0) == "model"  # type: ignore[arg-type]
    for surrogate, cls in (({"kind": "biased"}, BiasedReference), ({"kind": "noisy"}, NoisyReference),
                           ({"kind": "rounded", "step": 0.05}, RoundedState)):
        cfg = RunConfig(domain="cloud", agents=6, episodes=1, domain_config=SMALL, learner={"estimator": {"surrogate": surrogate}})
        domain, trainer = build(cfg)
        assert isinstance(trainer.estimator.model, cls)
        metrics = trainer.train_episode(domain.train_seeds(0, 1, 0))
        assert torch.isfinite(torch.tensor(metrics["train/policy_loss"]))
