"""Traffic observation layout (route blocks for the option scorer), the warm start, and the guidance potentials."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guidedmarl.guidance.weights import guidance_weights
from guidedmarl.training.networks import OptionScorer
from guidedmarl_domains.traffic import TrafficDomain
from guidedmarl_domains.traffic.env import ROUTE_FEATURES
from guidedmarl_domains.traffic.model import TrafficModel

torch.set_num_threads(1)

BRAESS = {"network": "braess", "horizon": 3, "level_low": 1.0, "level_high": 1.0, "od_noise": 0.0}


def braess(**extra: object) -> TrafficDomain:
    return TrafficDomain.from_config(6, {**BRAESS, **extra})  # type: ignore[return-value]


def test_observation_is_one_block_per_route_then_shared_features() -> None:
    domain = TrafficDomain.from_config(300, {"horizon": 2, "train_scenarios": 2})
    env = domain.make_env(2)
    k = env.spec.num_actions
    assert env.spec.option_features == ROUTE_FEATURES == 3 and env.spec.obs_dim == 3 * k + 4
    step = env.reset([0, 1])
    actions = torch.randint(0, k, (2, 300), generator=torch.Generator().manual_seed(1))
    step = env.step(actions)
    blocks = step.obs[..., : 3 * k].unflatten(-1, (k, 3))  # [E, N, k, 3]
    tau = env.tau[None, :, None]
    ff = torch.as_tensor(domain.system.path_free_flow)[env.packet_routes]
    np.testing.assert_allclose(blocks[..., 0].numpy(), (ff / env.tau[:, None]).expand(2, -1, -1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(blocks[..., 1].numpy(), (env.last_times / tau).numpy(), rtol=1e-6)
    assert torch.equal(blocks[..., 2].argmax(-1), actions) and torch.equal(blocks[..., 2].sum(-1), torch.ones(2, 300))
    shared = step.obs[..., 3 * k:]
    np.testing.assert_allclose(shared[..., 1].numpy(), env.quantile.expand(2, -1).numpy(), rtol=1e-6)
    assert torch.all(shared[..., 3] == 1 / 2)  # t / T after one of two days


def test_option_scorer_renames_logits_with_the_routes() -> None:
    """The auto actor scores routes with one network: permuting the route blocks permutes the logits."""
    domain = braess()
    env = domain.make_env(1)
    obs = env.reset([0]).obs
    k = env.spec.num_actions
    scorer = OptionScorer(6, env.spec.obs_dim, k, ROUTE_FEATURES, [16], shared=True, out_gain=1.0)
    perm = torch.tensor([2, 0, 1, 3])
    blocks = obs[..., : 3 * k].unflatten(-1, (k, 3))[..., perm, :].flatten(-2)
    permuted = torch.cat([blocks, obs[..., 3 * k:]], -1)
    torch.testing.assert_close(scorer(permuted), scorer(obs)[..., perm])


def test_warm_start_day_zero_sees_the_all_or_nothing_day() -> None:
    warm, cold = braess().make_env(1), braess(warm_start=False).make_env(1)
    warm.reset([0])
    cold.reset([0])
    # yesterday everyone took the zigzag (route 0): 6 travellers on links 1, 3, 4 of t = 10 v, 1 + v, 10 v
    aon = warm.route_times(warm.travel_time(warm.flows_of(torch.zeros(1, 6, dtype=torch.long))))
    torch.testing.assert_close(warm.last_times, aon)
    assert float(warm.last_times[0, 0, 0]) == pytest.approx(136.0, rel=1e-6)
    assert torch.equal(warm.last_action, torch.zeros(1, 6, dtype=torch.long))
    np.testing.assert_allclose(cold.last_times[0, 0].numpy(), warm.system.path_free_flow[warm.packet_routes[0]])
    assert (cold.last_action == -1).all()


def _one_day(domain: TrafficDomain, seed: int = 0) -> tuple:
    env = domain.make_env(2)
    env.reset([seed, seed + 1])
    gen = torch.Generator().manual_seed(3)
    actions = torch.randint(0, env.spec.num_actions, (2, env.spec.num_agents), generator=gen)
    return env, env.model_context(), actions


def test_system_cost_potential_is_minus_the_reward_and_its_gradient_the_marginal_cost() -> None:
    domain = TrafficDomain.from_config(300, {"horizon": 2, "train_scenarios": 2, "potential": "system_cost"})
    env, ctx, actions = _one_day(domain)
    model = domain.make_model()
    assert isinstance(model, TrafficModel)
    with torch.no_grad():
        x = model.state(actions, ctx).double()
        phi = model.potential(x, model.reference(ctx).double())
    reward = env.step(actions).reward
    np.testing.assert_allclose(phi.numpy(), -reward.numpy(), rtol=1e-5)
    # first order: s_i x marginal cost of the chosen route (t + v t' summed over its links) / T_ff
    g = guidance_weights(model, actions, ctx)
    links = domain.system.links
    flow = x.numpy() * links.capacity
    marginal = torch.as_tensor(links.cost("so", flow))  # [E, L]
    route_mc = env.route_times(marginal).gather(2, actions.unsqueeze(-1)).squeeze(-1)
    np.testing.assert_allclose(g.numpy(), (env.size * route_mc / domain.system.normaliser).numpy(), rtol=1e-4)


@pytest.mark.parametrize("potential", ["distance", "system_cost", "cost_divergence", "mixed"])
def test_exact_difference_is_the_potential_change_of_removing_the_packet(potential: str) -> None:
    """D_i = phi(x) - phi(x - z_i) with per-link BPR parameters (Braess: packets are whole travellers)."""
    domain = braess(potential=potential, cost_weight=3.0)
    env, ctx, actions = _one_day(domain)
    model = domain.make_model()
    d = guidance_weights(model, actions, ctx, exact_difference=True)
    with torch.no_grad():
        x, x_ref = model.state(actions, ctx), model.reference(ctx)
        z = model.influence(actions, ctx).dense(x.shape[1])  # [E, N, L]
        expected = model.potential(x, x_ref).unsqueeze(1) - model.potential(x.unsqueeze(1) - z, x_ref.unsqueeze(1))
    torch.testing.assert_close(d, expected, rtol=1e-4, atol=1e-5)


def test_cost_divergence_vanishes_at_the_reference() -> None:
    domain = TrafficDomain.from_config(1000, {"horizon": 2, "train_scenarios": 2, "potential": "cost_divergence"})
    env, ctx, _ = _one_day(domain)
    model = domain.make_model()
    x_ref = model.reference(ctx).double()
    assert model.potential(x_ref, x_ref).abs().max() < 1e-12
    assert model.potential_gradient(x_ref, x_ref).abs().max() < 1e-12
    assert (model.potential(x_ref * 1.1, x_ref) > 0).all() and (model.potential(x_ref * 0.9, x_ref) > 0).all()


def test_potential_setting_names_the_field() -> None:
    from guidedmarl import ConfigError

    with pytest.raises(ConfigError, match="potential: Input should be 'distance', 'system_cost'"):
        TrafficDomain.from_config(6, {"network": "braess", "potential": "tstt"})
