"""Power environment contract and analytical model (state, reference, influence, guidance)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pypower.api import case30, ext2int
from pypower.makePTDF import makePTDF

from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.config import ConfigError
from guidedmarl_domains.power import PowerDomain
from guidedmarl_domains.power.env import OBS_FEATURES, STATE_EXTRA, PowerEnv
from guidedmarl_domains.power.heuristics import Reference
from guidedmarl_domains.power.model import PowerModel, output_of, state_of_output
from guidedmarl.guidance.weights import guidance_weights

torch.set_num_threads(1)

SMALL = {"horizon": 6}
GENERATORS = {"case30": 6, "case118": 54}


def make(case: str = "case30", num_envs: int = 3, **settings) -> tuple[PowerDomain, PowerEnv]:
    domain = PowerDomain.from_config(GENERATORS[case], {"case": case, **SMALL, **settings})
    assert isinstance(domain, PowerDomain)
    return domain, domain.make_env(num_envs)


def random_actions(env: PowerEnv, gen: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(env.num_envs, env.spec.num_agents, 1, generator=gen)


@pytest.fixture
def float64() -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# ----------------------------------------------------------------------------- N from the case
def test_agents_come_from_the_case() -> None:
    assert PowerDomain.from_config(6, {}).num_agents == 6
    assert PowerDomain.from_config(None, {}).num_agents == 6  # --agents not given
    with pytest.raises(ConfigError, match=r"agents: case case30 has 6 dispatchable generators"):
        PowerDomain.from_config(50, {})
    with pytest.raises(ConfigError, match=r"case case118 has 54 dispatchable generators.*--agents 54"):
        PowerDomain.from_config(60, {"case": "case118"})
    with pytest.raises(ConfigError, match=r"domain_config.case: unknown power case 'case7'"):
        PowerDomain.from_config(6, {"case": "case7"})
    with pytest.raises(ConfigError, match="period_minutes"):
        PowerDomain.from_config(6, {"period_minutes": 5})


# ----------------------------------------------------------------------------- env contract
def test_spec_shapes_and_episode() -> None:
    domain, env = make()
    g, lines = 6, 41
    assert env.spec.num_agents == g and env.spec.action_kind == "continuous" and env.spec.action_dim == 1
    assert env.spec.obs_dim == OBS_FEATURES and env.spec.state_dim == g + lines + STATE_EXTRA
    step = env.reset([1, 2, 3])
    assert step.obs.shape == (3, g, OBS_FEATURES) and step.obs.dtype == torch.float32
    assert step.state.shape == (3, g + lines + STATE_EXTRA) and step.active.all()
    gen = torch.Generator().manual_seed(0)
    for t in range(env.spec.horizon):
        step = env.step(random_actions(env, gen))
        assert step.reward.shape == (3,) and torch.isfinite(step.reward).all() and (step.reward < 0).all()
        assert bool(step.done.all()) == (t == env.spec.horizon - 1)
        assert all(v.shape == (3,) for v in step.info.values())
        assert torch.isfinite(step.obs).all() and torch.isfinite(step.state).all()
    with pytest.raises(RuntimeError, match="over"):
        env.step(random_actions(env, gen))


def test_reset_is_deterministic_per_seed() -> None:
    _, env_a = make(num_envs=2)
    _, env_b = make(num_envs=2)

    def episode(env: PowerEnv, seeds: list[int]) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(5)
        steps = [env.reset(seeds)]
        steps += [env.step(random_actions(env, gen)) for _ in range(env.spec.horizon)]
        return [torch.cat([s.obs.flatten(), s.state.flatten(), s.reward]) for s in steps]

    for a, b in zip(episode(env_a, [4, 9]), episode(env_b, [4, 9]), strict=True):
        assert torch.equal(a, b)
    env_a.reset([4, 10])
    env_b.reset([4, 9])
    assert torch.equal(env_a.demand[0], env_b.demand[0]) and not torch.equal(env_a.demand[1], env_b.demand[1])


def test_bad_actions_are_rejected_with_a_clear_message() -> None:
    _, env = make(num_envs=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(2, 6, 1))
    env.reset([0, 1])
    with pytest.raises(ValueError, match=r"shape \(2, 6, 1\)"):
        env.step(torch.zeros(2, 6))
    with pytest.raises(ValueError, match="float"):
        env.step(torch.zeros(2, 6, 1, dtype=torch.long))
    nan = torch.zeros(2, 6, 1)
    nan[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        env.step(nan)
    assert env.t == 0  # nothing was applied


def test_outputs_stay_within_limits_and_ramps() -> None:
    domain, env = make(num_envs=4, ramp_per_hour=0.1)
    env.reset([0, 1, 2, 3])
    c = env.c
    prev = env.p_prev.clone()
    torch.testing.assert_close(prev, env.reference[:, 0])  # the day starts at the reference
    gen = torch.Generator().manual_seed(1)
    for _ in range(env.spec.horizon):
        env.step(random_actions(env, gen, scale=20.0))  # saturating actions too
        p = env.p_prev
        assert torch.all(p >= c["pmin"] - 1e-12) and torch.all(p <= c["pmax"] + 1e-12)
        assert torch.all((p - prev).abs() <= c["ramp"] + 1e-12)
        prev = p.clone()


def test_reward_is_the_documented_formula() -> None:
    domain, env = make(num_envs=2, rating_scale=0.6, period_minutes=30)
    step = env.reset([3, 4])
    gen = torch.Generator().manual_seed(2)
    env.step(random_actions(env, gen))
    lo, hi = env.window()
    actions = random_actions(env, gen)
    p = lo + (hi - lo) * torch.sigmoid(actions[..., 0].double())
    step = env.step(actions)
    case, system, s = domain.system.case, domain.system, domain.settings
    pn = p.numpy()
    flows = pn @ system.network.ptdf_gen.T + env.flow_offset[:, 1].numpy()
    overload = np.maximum(np.abs(flows) - system.network.rate, 0).sum(-1)
    imbalance = np.abs(pn.sum(-1) - env.demand[:, 1].numpy())
    expected = -(case.cost(pn) / system.price + s.imbalance_weight * imbalance + s.overload_weight * overload)
    np.testing.assert_allclose(step.reward.numpy(), 0.5 * expected / system.nominal_demand, rtol=1e-5)


def test_reward_scale_does_not_depend_on_n() -> None:
    """The reference dispatch earns about the same reward per period on 6 and on 54 generators."""
    per_period = {}
    for case in ("case30", "case118"):
        _, env = make(case, num_envs=4, start_hour=8.0)
        policy = Reference()
        step = env.reset([0, 1, 2, 3])
        total = torch.zeros(4)
        for _ in range(env.spec.horizon):
            step = env.step(policy(env, step))
            total += step.reward
        per_period[case] = float(total.mean()) / env.spec.horizon
    assert -1.5 < per_period["case30"] < -0.5 and -1.5 < per_period["case118"] < -0.5
    assert 2 / 3 < per_period["case30"] / per_period["case118"] < 3 / 2


# ----------------------------------------------------------------------------- analytical model
def context_after(env: PowerEnv, steps: int = 2):
    gen = torch.Generator().manual_seed(3)
    env.reset(list(range(env.num_envs)))
    for _ in range(steps):
        env.step(random_actions(env, gen))
    return env.model_context()


def test_reference_state_maps_the_reference_dispatch(float64: None) -> None:
    domain, env = make()
    ctx = context_after(env)
    x_ref = PowerModel().reference(ctx)
    p_ref = env.reference[:, env.t]
    torch.testing.assert_close(x_ref[:, :6], p_ref / env.c["scale"])
    flows = p_ref @ env.c["ptdf"].T + env.flow_offset[:, env.t]
    torch.testing.assert_close(x_ref[:, 6:], flows / env.c["rate"])


def test_influence_closed_form_equals_autograd_and_pypower_ptdf(float64: None) -> None:
    """z_i = dp_i/da_i [e_i / s_i ; PTDF[:, bus_i] / F], with the PTDF from pypower's makePTDF."""
    domain, env = make()
    ctx = context_after(env)
    model = PowerModel()
    actions = random_actions(env, torch.Generator().manual_seed(4), scale=2.0)
    dim = 6 + 41
    closed = model.influence(actions, ctx).dense(dim)
    generic = AnalyticalModel.influence(model, actions, ctx).dense(dim)
    torch.testing.assert_close(closed, generic, rtol=1e-10, atol=1e-12)

    case = domain.system.case
    ppc = ext2int(case30())
    ptdf = makePTDF(ppc["baseMVA"], ppc["bus"], ppc["branch"])[:, case.gen_bus]  # [L, G]
    sig = torch.sigmoid(actions[..., 0])
    dp = (ctx.span * sig * (1 - sig)).numpy()  # [E, G]
    expected = np.zeros((3, 6, dim))
    expected[:, np.arange(6), np.arange(6)] = dp / case.pmax
    expected[:, :, 6:] = dp[:, :, None] * (ptdf / domain.system.network.rate[:, None]).T[None]
    np.testing.assert_allclose(closed.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_guidance_is_the_vector_jacobian_product(float64: None) -> None:
    domain, env = make()
    ctx = context_after(env, steps=3)
    model = PowerModel()
    gen = torch.Generator().manual_seed(6)
    actions, mean = random_actions(env, gen), random_actions(env, gen)
    x, x_ref = model.state(actions, ctx), model.reference(ctx)
    z = model.influence(actions, ctx).dense(x.shape[1])
    g = guidance_weights(model, actions, ctx)
    torch.testing.assert_close(g, torch.einsum("end,ed->en", z, x - x_ref))
    # the trainer's weight for continuous actions: g_i (a_i - mu_i)
    weight = guidance_weights(model, actions, ctx, mean_action=mean)
    torch.testing.assert_close(weight, g * (actions - mean)[..., 0])


def test_balance_component_of_the_default_model(float64: None) -> None:
    """The default model (balance_weight 10) appends b = sum p / sum s, weighs it 10 G, and its
    closed-form influence (dp_i / sum s) equals autograd; balance_weight 0 is the plain model."""
    domain, env = make()
    assert domain.settings.balance_weight == 10.0
    model = domain.make_model()
    ctx = context_after(env)
    actions = random_actions(env, torch.Generator().manual_seed(8), scale=2.0)
    x, x_ref = model.state(actions, ctx), model.reference(ctx)
    plain = PowerModel()
    torch.testing.assert_close(x[:, :-1], plain.state(actions, ctx))
    p = output_of(actions, ctx)
    torch.testing.assert_close(x[:, -1], p.sum(-1) / ctx.scale.sum())
    torch.testing.assert_close(x_ref[:, -1], env.reference[:, env.t].sum(-1) / ctx.scale.sum())
    assert model.component_weights is not None and float(model.component_weights[-1]) == 10.0 * 6
    assert bool((model.component_weights[:-1] == 1).all())
    dim = x.shape[1]
    closed = model.influence(actions, ctx).dense(dim)
    torch.testing.assert_close(closed, AnalyticalModel.influence(model, actions, ctx).dense(dim), rtol=1e-10, atol=1e-12)
    # the first-order weight includes the balance term w_b (b - b_ref) db/da_i, and (the default
    # overload_potential, 100) the overload term's gradient on the lines beyond their limits
    assert domain.settings.overload_potential == 100.0
    g = guidance_weights(model, actions, ctx)
    expected = torch.einsum("end,ed->en", closed, model.potential_gradient(x, x_ref) * model.component_weights)
    torch.testing.assert_close(g, expected)


@pytest.mark.parametrize("case", ["case30", "case118"])
@pytest.mark.parametrize("balance_weight, line_weight", [(0.0, 1.0), (10.0, 1.0), (0.0, 30.0), (10.0, 30.0)])
def test_gram_guidance_equals_the_backward_pass(case: str, balance_weight: float, line_weight: float, float64: None) -> None:
    """The Gram-matrix weights (LinearOutputModel) equal the generic backward pass through x for
    the pathwise g, the first-order and the exact-difference weights, with and without balance
    and with weighted line components."""
    domain, env = make(case, balance_weight=balance_weight, line_weight=line_weight, overload_potential=0.0)
    model = domain.make_model()
    assert model.gram_guidance
    ctx = context_after(env, steps=2)
    gen = torch.Generator().manual_seed(11)
    actions, mean = random_actions(env, gen, scale=2.0), random_actions(env, gen, scale=2.0)
    for exact, mu in ((False, None), (False, mean), (True, mean)):
        fast = guidance_weights(model, actions, ctx, exact, mean_action=mu)
        slow = guidance_weights(model, actions, ctx, exact, mean_action=mu, structured=False)
        assert fast.shape == (env.num_envs, env.spec.num_agents)
        assert float(slow.abs().max()) > 0
        torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9 * float(slow.abs().max()))
    assert model.gram(ctx) is model.gram(context_after(env, steps=1))  # computed once per network


def test_line_weight_multiplies_the_flow_terms_of_the_potential(float64: None) -> None:
    domain, env = make("case30", balance_weight=0.0, line_weight=4.0, overload_potential=0.0)
    model, plain = domain.make_model(), make("case30", balance_weight=0.0, overload_potential=0.0)[0].make_model()
    ctx = context_after(env, steps=1)
    actions = random_actions(env, torch.Generator().manual_seed(3))
    x, x_ref = model.state(actions, ctx), model.reference(ctx)
    g = 6  # case30's generators: outputs first, then the 41 line flows
    d = (x - x_ref).square()
    expected = 0.5 * (d[:, :g].sum(-1) + 4.0 * d[:, g:].sum(-1))
    torch.testing.assert_close(model.potential(x, x_ref), expected)
    torch.testing.assert_close(plain.potential(x, x_ref), 0.5 * d.sum(-1))


def test_gram_guidance_in_float32_matches_within_rounding() -> None:
    domain, env = make("case118", overload_potential=0.0)
    model = domain.make_model()
    ctx = context_after(env, steps=2)
    gen = torch.Generator().manual_seed(12)
    actions, mean = random_actions(env, gen), random_actions(env, gen)
    fast = guidance_weights(model, actions, ctx, True, mean_action=mean)
    slow = guidance_weights(model, actions, ctx, True, mean_action=mean, structured=False)
    assert fast.dtype == slow.dtype == torch.float32
    torch.testing.assert_close(fast, slow, rtol=1e-3, atol=1e-4 * float(slow.abs().max()))


def test_state_map_is_the_action_map_then_dc_flow(float64: None) -> None:
    _, env = make()
    ctx = context_after(env)
    actions = torch.zeros(3, 6, 1)
    p = output_of(actions, ctx)
    torch.testing.assert_close(p, ctx.lower + 0.5 * ctx.span)
    x = PowerModel().state(actions, ctx)
    torch.testing.assert_close(x, state_of_output(p, ctx))
    assert x.shape == (3, 6 + 41)


def test_time_of_day_features() -> None:
    _, env = make(num_envs=1, start_hour=6.0, load={"phase_hours": 0.0})
    step = env.reset([0])
    sin, cos = step.obs[0, 0, -2], step.obs[0, 0, -1]
    assert float(sin) == pytest.approx(math.sin(math.pi / 2), abs=1e-6) and abs(float(cos)) < 1e-6


def test_overload_potential_charges_flows_beyond_their_limits(float64: None) -> None:
    """``overload_potential`` > 0: phi adds lambda/2 relu(|f/F| - 1)^2 on lines; the exact difference is
    phi(x) - phi(x - z_i sigma_i), computed here from the potential itself and by the model on
    the Gram path (the quadratic part from M, the overload part over the lines it can touch)."""
    from guidedmarl_domains.power.model import OverloadAwarePowerModel

    domain, env = make("case30", overload_potential=100.0, rating_scale=0.3)  # a congested case30
    model = domain.make_model()
    assert isinstance(model, OverloadAwarePowerModel) and model.nonquadratic_potential
    assert model.gram_path(exact_difference=False) and model.gram_path(exact_difference=True)
    ctx = context_after(env, steps=1)
    gen = torch.Generator().manual_seed(5)
    actions, mean = random_actions(env, gen, scale=2.0), random_actions(env, gen, scale=2.0)
    x, x_ref = model.state(actions, ctx), model.reference(ctx)
    g = 6
    lines = x[:, g : g + 41]
    assert int((lines.abs() > 1).sum()) > 0  # the extra term is active in this test
    d = (x - x_ref).square() * model.component_weights
    over = torch.relu(lines.abs() - 1).square() * model.component_weights[g : g + 41]
    torch.testing.assert_close(model.potential(x, x_ref), 0.5 * d.sum(-1) + 50.0 * over.sum(-1))
    exact = guidance_weights(model, actions, ctx, True, mean_action=mean)
    z = AnalyticalModel.influence(model, actions, ctx).dense(x.shape[1])  # [E, N, D]
    delta = (actions - mean).squeeze(-1)
    for i in range(g):
        without = x - z[:, i] * delta[:, i : i + 1]
        torch.testing.assert_close(exact[:, i], model.potential(x, x_ref) - model.potential(without, x_ref))
    first = guidance_weights(model, actions, ctx, False, mean_action=mean)
    leaf = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.potential(leaf, x_ref).sum(), leaf)
    torch.testing.assert_close(first, torch.einsum("end,ed->en", z, grad) * delta)


@pytest.mark.parametrize("line_weight, balance_weight", [(1.0, 0.0), (3.0, 10.0)])
def test_overload_gram_path_equals_the_backward_pass(line_weight: float, balance_weight: float, float64: None) -> None:
    """First-order and pathwise weights of the overload potential from M (u - u_ref) plus the
    overloaded lines' rows equal the backward pass through x, and its exact-difference weights
    on the Gram path equal the generic path's; on a case with no overloaded line
    the extra term is zero and the weights are the quadratic model's."""
    domain, env = make("case30", overload_potential=100.0, rating_scale=0.3, line_weight=line_weight,
                       balance_weight=balance_weight)  # fmt: skip
    model = domain.make_model()
    ctx = context_after(env, steps=1)
    gen = torch.Generator().manual_seed(8)
    actions, mean = random_actions(env, gen, scale=2.0), random_actions(env, gen, scale=2.0)
    lines = model.state(actions, ctx)[:, 6 : 6 + 41]
    assert int((lines.abs() > 1).sum()) > 0 and int((lines.abs() <= 1).sum()) > 0
    extra = model.nonquadratic_gradient(actions, ctx)
    assert float(extra.abs().max()) > 0
    for exact, mu in ((False, None), (False, mean), (True, mean)):
        fast = guidance_weights(model, actions, ctx, exact, mean_action=mu)
        slow = guidance_weights(model, actions, ctx, exact, mean_action=mu, structured=False)
        torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9 * float(slow.abs().max()))
    uncongested, env_u = make("case30", overload_potential=100.0)
    ctx_u = context_after(env_u, steps=1)
    actions_u = random_actions(env_u, torch.Generator().manual_seed(9), scale=0.5)
    assert float(uncongested.make_model().state(actions_u, ctx_u)[:, 6 : 6 + 41].abs().max()) <= 1
    plain = make("case30", overload_potential=0.0)[0].make_model()
    torch.testing.assert_close(guidance_weights(uncongested.make_model(), actions_u, ctx_u),
                               guidance_weights(plain, actions_u, ctx_u))  # fmt: skip


def test_a_gram_model_without_its_nonquadratic_gradient_is_named() -> None:
    from guidedmarl_domains.power.model import PowerModel as Base

    class Half(Base):
        nonquadratic_potential = True

    domain, env = make("case30")
    ctx = context_after(env, steps=1)
    actions = random_actions(env, torch.Generator().manual_seed(1))
    with pytest.raises(NotImplementedError, match="Half sets nonquadratic_potential = True: implement"):
        guidance_weights(Half(), actions, ctx)


_SCREEN_DOMAINS: dict[float, tuple[PowerDomain, PowerEnv]] = {}


@contextlib.contextmanager
def _congested_period(rating_scale: float, steps: int, seed: int, action_scale: float) -> Iterator[tuple]:
    """(model, env, context, generator) of case30 with line limits times ``rating_scale``, ``steps``
    random steps into a day, in float64 (restored afterwards); the domains are kept per scale."""
    if rating_scale not in _SCREEN_DOMAINS:
        _SCREEN_DOMAINS[rating_scale] = make("case30", overload_potential=100.0, rating_scale=rating_scale)
    domain, env = _SCREEN_DOMAINS[rating_scale]
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = domain.make_model()
        gen = torch.Generator().manual_seed(seed)
        env.reset(list(range(env.num_envs)))
        for _ in range(steps):
            env.step(random_actions(env, gen, scale=action_scale))
        yield model, env, env.model_context(), gen
    finally:
        torch.set_default_dtype(old)


@settings(max_examples=30, deadline=None, database=None)
@given(
    rating_scale=st.sampled_from([0.3, 0.5, 0.7]),
    steps=st.integers(0, 5),
    seed=st.integers(0, 2**16),
    action_scale=st.sampled_from([0.5, 2.0, 20.0]),
)
def test_line_screening_keeps_every_line_an_action_can_overload(
    rating_scale: float, steps: int, seed: int, action_scale: float
) -> None:
    """The overload gradient computed on the reachable lines only (|f_pre| + ramp reach at the
    limit) equals the one over every line, and every line beyond its limit is among them, for
    actions anywhere in the ramp window (large scales saturate at its ends)."""
    with _congested_period(rating_scale, steps, seed, action_scale) as (model, env, ctx, gen):
        actions = random_actions(env, gen, scale=action_scale)
        reachable = model.reachable_lines(ctx)
        assert reachable is not None and reachable.shape == (env.system.num_lines,)
        g = env.spec.num_agents
        lines = model.state(actions, ctx)[:, g : g + env.system.num_lines]
        assert not bool(((lines.abs() >= 1).any(0) & ~reachable).any())
        unscreened = dataclasses.replace(ctx, pre_dispatch_flows=None, ramp_reach=None)
        assert model.reachable_lines(unscreened) is None
        torch.testing.assert_close(
            model.nonquadratic_gradient(actions, ctx), model.nonquadratic_gradient(actions, unscreened),
            rtol=1e-12, atol=1e-12,
        )


def test_line_screening_drops_lines_and_follows_a_day(float64: None) -> None:
    """Over a day of a moderately congested case30 the screen leaves lines out (that is its point),
    the cached rows follow the loading (each step equals the unscreened gradient) and an
    uncongested period needs no line at all."""
    domain, env = make("case30", overload_potential=100.0, rating_scale=0.5)
    model = domain.make_model()
    gen = torch.Generator().manual_seed(4)
    env.reset(list(range(env.num_envs)))
    kept = []
    for _ in range(env.spec.horizon):
        ctx = env.model_context()
        actions = random_actions(env, gen, scale=2.0)
        kept.append(int(model.reachable_lines(ctx).sum()))
        unscreened = dataclasses.replace(ctx, pre_dispatch_flows=None, ramp_reach=None)
        torch.testing.assert_close(model.nonquadratic_gradient(actions, ctx),
                                   model.nonquadratic_gradient(actions, unscreened), rtol=1e-12, atol=1e-12)  # fmt: skip
        env.step(actions)
    assert 0 < min(kept) and max(kept) < env.system.num_lines
    loose, env_l = make("case30", overload_potential=100.0)
    env_l.reset([0, 1, 2])
    ctx = env_l.model_context()
    assert int(loose.make_model().reachable_lines(ctx).sum()) == 0
    h = loose.make_model().nonquadratic_gradient(random_actions(env_l, gen), ctx)
    assert h.shape == (3, 6) and float(h.abs().max()) == 0.0


@settings(max_examples=25, deadline=None, database=None)
@given(
    rating_scale=st.sampled_from([0.3, 0.5, 1.0]),
    steps=st.integers(0, 4),
    seed=st.integers(0, 2**16),
    action_scale=st.sampled_from([0.5, 2.0, 20.0]),
    chunk=st.sampled_from([1, 7, 512]),
)
def test_exact_overload_difference_on_the_gram_path_equals_the_generic_path(
    rating_scale: float, steps: int, seed: int, action_scale: float, chunk: int
) -> None:
    """The exact-difference weights of the overload potential from M plus
    ``nonquadratic_exact_drop`` (lines skipped by their bound, the rest in chunks) equal the
    generic path's phi(x) - phi(x - z_i sigma_i) through the dense influence, in float64, from
    uncongested to congested periods and for steps that saturate the sigmoid."""
    with _congested_period(rating_scale, steps, seed, action_scale) as (model, env, ctx, gen):
        model.EXACT_LINE_CHUNK = chunk
        actions, mean = random_actions(env, gen, scale=action_scale), random_actions(env, gen, scale=action_scale)
        assert model.gram_path(exact_difference=True)
        fast = guidance_weights(model, actions, ctx, True, mean_action=mean)
        slow = guidance_weights(model, actions, ctx, True, mean_action=mean, structured=False)
        torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9 * max(float(slow.abs().max()), 1e-12))
