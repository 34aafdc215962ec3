"""Cloud domain end to end: env contract, observations, analytical model, reference, learners.

Everything runs on small settings (horizon 6-20, warm-up 3-10, a handful of environments) so
the whole file stays well under a minute on two cores; the N = 1500 smoke test takes a few
hundredths of a second (measured), so it is not marked slow.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from guidedmarl import RunConfig
from guidedmarl.analytical.layers import make_allocation_layer
from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.evaluation import evaluate_heuristic
from guidedmarl.experiment import build
from guidedmarl_domains.cloud import CloudDomain
from guidedmarl_domains.cloud.env import CANDIDATE_FEATURES, JOB_FEATURES
from guidedmarl_domains.cloud.heuristics import ClusterView, LeastLoaded
from guidedmarl_domains.cloud.rules import HEURISTICS
from guidedmarl_domains.cloud.model import CloudContext, CloudModel
from guidedmarl.guidance.weights import guidance_weights

torch.set_num_threads(1)

SMALL = {"horizon": 8, "warmup": 4}
"""Small episodes for contract tests: N = 20 gives M = 10 servers and K = 8 candidates."""


def small_domain(n: int = 20, **overrides) -> CloudDomain:
    return CloudDomain.from_config(n, {**SMALL, **overrides})  # type: ignore[return-value]


def random_actions(env, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, env.spec.num_actions, (env.num_envs, env.spec.num_agents), generator=generator)


def play(env, seeds: list[int], action_seed: int = 0):
    """One episode with uniformly random actions; returns the list of steps (reset first)."""
    gen = torch.Generator().manual_seed(action_seed)
    steps = [env.reset(seeds)]
    for _ in range(env.spec.horizon):
        steps.append(env.step(random_actions(env, gen)))
    return steps


def context_after(env, seeds: list[int], steps: int = 2, action_seed: int = 0) -> CloudContext:
    """The model context after ``steps`` random steps (a cluster with running and queued jobs)."""
    gen = torch.Generator().manual_seed(action_seed)
    env.reset(seeds)
    for _ in range(steps):
        env.step(random_actions(env, gen))
    return env.model_context()


def hand_context(
    cpu: list[float], mem: list[float], committed: list[list[float]], offered: list[float], demand: list[list[float]]
) -> CloudContext:
    """One environment; every agent may use every server (candidates = all servers, in order)."""
    m, n = len(cpu), len(demand)
    return CloudContext(
        committed=torch.tensor([committed], dtype=torch.float32),
        capacity=torch.tensor([cpu, mem], dtype=torch.float32).T.contiguous(),
        candidates=torch.arange(m).expand(n, m).contiguous(),
        demand=torch.tensor([demand], dtype=torch.float32),
        offered=torch.tensor([offered], dtype=torch.float32),
    )


# =============================================================================== env contract
def test_reset_and_step_match_the_spec() -> None:
    domain = small_domain()
    env = domain.make_env(3)
    spec = env.spec
    m = domain.fleet.num_servers
    assert (spec.num_agents, spec.num_actions, spec.horizon) == (20, 8, SMALL["horizon"])
    assert spec.obs_dim == CANDIDATE_FEATURES * 8 + JOB_FEATURES == 9 * 8 + 5
    assert spec.state_dim == 4 * m + 3
    steps = play(env, [11, 12, 13])
    assert len(steps) == spec.horizon + 1
    for t, st in enumerate(steps):
        assert st.obs.shape == (3, spec.num_agents, spec.obs_dim) and st.obs.dtype == torch.float32
        assert st.state.shape == (3, spec.state_dim) and st.state.dtype == torch.float32
        assert st.active.shape == (3, spec.num_agents) and st.active.dtype == torch.bool
        assert st.reward.shape == (3,) and st.reward.dtype == torch.float32
        assert st.done.shape == (3,) and st.done.dtype == torch.bool
        assert torch.isfinite(st.obs).all() and torch.isfinite(st.state).all()
        assert torch.isfinite(st.reward).all()
        assert (st.reward <= 0).all()  # r = -W / lambda - beta Q with W, Q >= 0
        assert bool(st.done.all()) == (t == spec.horizon) and bool(st.done.any()) == (t == spec.horizon)
        for v in st.info.values():
            assert v.shape == (3,) and torch.isfinite(v).all()
    assert (steps[0].reward == 0).all()  # zero after reset
    assert any(st.active.any() for st in steps[:-1])  # jobs arrive at all
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(torch.zeros(3, spec.num_agents, dtype=torch.long))


def test_step_before_reset_and_wrong_number_of_seeds_raise() -> None:
    env = small_domain().make_env(2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(2, 20, dtype=torch.long))
    with pytest.raises(ValueError, match="needs 2 seeds, got 3"):
        env.reset([1, 2, 3])
    with pytest.raises(ValueError, match="needs 2 seeds, got 1"):
        env.reset([1])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda e, n, k: torch.full((e, n), k, dtype=torch.long), r"must lie in \[0, 7\]"),
        (lambda e, n, k: torch.full((e, n), -1, dtype=torch.long), r"must lie in \[0, 7\]"),
        (lambda e, n, k: torch.zeros(e, n), "must be integer tensors"),
        (lambda e, n, k: torch.zeros(e, n + 1, dtype=torch.long), "must have shape"),
        (lambda e, n, k: torch.zeros(n, dtype=torch.long), "must have shape"),
        (lambda e, n, k: torch.zeros(e, n, 1, dtype=torch.long), "must have shape"),
    ],
    ids=["too-large", "negative", "float", "wrong-n", "no-env-dim", "extra-dim"],
)
def test_bad_actions_raise_a_clear_value_error_and_change_nothing(make, message: str) -> None:
    env = small_domain().make_env(2)
    env.reset([5, 6])
    env.step(torch.zeros(2, 20, dtype=torch.long))
    with pytest.raises(ValueError, match=message):
        env.step(make(2, 20, env.spec.num_actions))
    # the rejected call neither advanced time nor dispatched anything: replaying the same
    # valid action from a fresh reset gives the same next step
    good = torch.ones(2, 20, dtype=torch.long)
    after_bad = env.step(good)
    ref = small_domain().make_env(2)
    ref.reset([5, 6])
    ref.step(torch.zeros(2, 20, dtype=torch.long))
    expected = ref.step(good)
    assert torch.equal(after_bad.obs, expected.obs) and torch.equal(after_bad.reward, expected.reward)
    assert torch.equal(after_bad.state, expected.state)


def test_int32_actions_are_accepted_and_equal_int64() -> None:
    a, b = small_domain().make_env(2), small_domain().make_env(2)
    a.reset([3, 4])
    b.reset([3, 4])
    act = torch.randint(0, 8, (2, 20), generator=torch.Generator().manual_seed(1))
    sa, sb = a.step(act), b.step(act.int())
    assert torch.equal(sa.obs, sb.obs) and torch.equal(sa.reward, sb.reward)


def test_same_seeds_same_trajectory_different_seeds_differ() -> None:
    seeds = [101, 102]
    one = play(small_domain().make_env(2), seeds, action_seed=7)
    two = play(small_domain().make_env(2), seeds, action_seed=7)
    for x, y in zip(one, two):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.state, y.state)
        assert torch.equal(x.active, y.active) and torch.equal(x.reward, y.reward)
    # the same env object replays identically after a second reset, too
    env = small_domain().make_env(2)
    play(env, [7, 8])
    again = play(env, seeds, action_seed=7)
    assert all(torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward) for x, y in zip(one, again))
    other = play(small_domain().make_env(2), [201, 202], action_seed=7)
    assert any(not torch.equal(x.obs, y.obs) for x, y in zip(one, other))
    assert any(not torch.equal(x.reward, y.reward) for x, y in zip(one[1:], other[1:]))


# =============================================================================== observation
def test_fits_feature_matches_a_direct_recomputation_and_utilisations_are_nonnegative() -> None:
    domain = small_domain()
    env = domain.make_env(2)
    gen = torch.Generator().manual_seed(3)
    step = env.reset([21, 22])
    k = env.spec.num_actions
    seen: set[float] = set()
    for _ in range(env.spec.horizon - 1):
        # loads and demands are dyadic and capacities powers of two: the comparison is exact
        cap = env.sim.capacity  # [M, 2] float64
        committed = env.sim.running_load.double() + env.sim.queued_load.double()
        jobs = env.current_jobs()
        demand = torch.stack([jobs.cpu, jobs.mem], dim=-1).double()
        for e in range(2):
            for agent in range(env.spec.num_agents):
                for j in range(k):
                    server = int(domain.candidates[agent, j])
                    fits = float(bool((committed[e, server] + demand[e, agent] <= cap[server]).all()))
                    assert step.obs[e, agent, j * CANDIDATE_FEATURES + 6].item() == fits, (e, agent, j)
                    seen.add(fits)
        # job block: CPU / 4, memory / 8, has-job flag
        job = step.obs[..., CANDIDATE_FEATURES * k :]
        torch.testing.assert_close(job[..., 0], jobs.cpu / 4.0)
        torch.testing.assert_close(job[..., 1], jobs.mem / 8.0)
        assert torch.equal(job[..., 3], jobs.active.float()) and torch.equal(step.active, jobs.active)
        per_cand = step.obs[..., : CANDIDATE_FEATURES * k].reshape(2, 20, k, CANDIDATE_FEATURES)
        assert (per_cand[..., 0:4] >= 0).all()  # running and queued utilisations
        assert ((per_cand[..., 6] == 0) | (per_cand[..., 6] == 1)).all()
        m = domain.fleet.num_servers
        assert (step.state[:, : 4 * m] >= 0).all()  # committed and running utilisations
        step = env.step(random_actions(env, gen))
    assert seen == {0.0, 1.0}  # both outcomes occur, so the comparison is not vacuous


# =============================================================================== model
def _generic(model: CloudModel) -> CloudModel:
    """The same model, but guidance through the generic autograd VJP path."""

    class GenericCloudModel(CloudModel):
        closed_form_influence = False

    return GenericCloudModel(
        model.num_actions,
        model.layer,
        model.eta,
        model.max_utilisation,
        potential=model.potential_kind,
        overload_penalty=model.overload_penalty,
        component_weights=model.component_weights,
        distance_weight=model.distance_weight,
        packing_weight=model.packing_weight,
    )


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    distance_weight=st.floats(0.0, 3.0),
    overload_penalty=st.floats(0.0, 200.0),
    packing_weight=st.floats(0.0, 3.0),
)
def test_closed_form_potential_gradient_and_drop_match_the_terms(
    seed: int, distance_weight: float, overload_penalty: float, packing_weight: float
) -> None:
    """``potential_gradient`` is the autograd derivative of ``potential_terms`` and
    ``potential_drop`` their difference, on both sides of the kinks at x = 1 (float64)."""
    gen = torch.Generator().manual_seed(seed)
    model = CloudModel(3, make_allocation_layer("waterfill"), potential="capacity", overload_penalty=overload_penalty,
                       distance_weight=distance_weight, packing_weight=packing_weight)
    x = (torch.rand(64, generator=gen, dtype=torch.float64) * 1.6).requires_grad_(True)
    x_ref = torch.rand(64, generator=gen, dtype=torch.float64)
    step = torch.rand(64, generator=gen, dtype=torch.float64) * 0.5
    (grad,) = torch.autograd.grad(model.potential_terms(x, x_ref).sum(), x)
    torch.testing.assert_close(model.potential_gradient(x.detach(), x_ref), grad)
    x = x.detach()
    expected = model.potential_terms(x, x_ref) - model.potential_terms(x - step, x_ref)
    torch.testing.assert_close(model.potential_drop(x, x_ref, step), expected)


@pytest.fixture(scope="module")
def model_case():
    domain = small_domain()
    env = domain.make_env(3)
    ctx = context_after(env, [31, 32, 33], steps=3)
    actions = torch.randint(0, env.spec.num_actions, (3, 20), generator=torch.Generator().manual_seed(4))
    return domain, domain.make_model(), ctx, actions


def test_closed_form_influence_equals_autograd_and_finite_difference(model_case) -> None:
    domain, model, ctx, actions = model_case
    d = 2 * domain.fleet.num_servers
    assert ctx.demand.abs().sum() > 0 and (ctx.demand == 0).any()  # active and inactive agents
    closed = model.influence(actions, ctx).dense(d)
    generic = AnalyticalModel.influence(model, actions, ctx).dense(d)
    torch.testing.assert_close(closed, generic)
    assert (closed != 0).sum(dim=-1).max() <= 2  # two non-zeros per agent: CPU and memory
    # finite difference: z_i = x(a) - x(a without agent i's job)
    x = model.state(actions, ctx)
    for e in range(3):
        for agent in range(20):
            demand = ctx.demand.clone()
            demand[e, agent] = 0.0
            x_without = model.state(actions, dataclasses.replace(ctx, demand=demand))
            torch.testing.assert_close(x[e] - x_without[e], closed[e, agent])


def test_closed_form_guidance_equals_generic_vjp(model_case) -> None:
    _, model, ctx, actions = model_case
    g_closed = guidance_weights(model, actions, ctx)
    g_generic = guidance_weights(_generic(model), actions, ctx)
    assert g_closed.shape == (3, 20)
    torch.testing.assert_close(g_closed, g_generic, rtol=1e-5, atol=1e-6)
    assert (g_closed[ctx.demand.sum(-1) == 0] == 0).all()  # no job, no influence


@pytest.mark.parametrize(
    "potential, weighting, extra",
    [
        ("distance", "uniform", {}),
        ("capacity", "capacity", {}),
        ("capacity", "uniform", {}),
        ("capacity", "capacity", {"packing_weight": 1.5}),
        ("capacity", "capacity", {"packing_weight": 1.0, "distance_weight": 0.0}),
    ],
)
def test_exact_difference_guidance_is_the_exact_change_of_the_potential(
    potential: str, weighting: str, extra: dict
) -> None:
    """D_i = phi(x) - phi(x without agent i's job), for the paper's distance, the default
    capacity-aware, capacity-weighted potential and its packing variants (the job's demand set
    to 0 = agent i absent)."""
    domain = small_domain(potential=potential, potential_weighting=weighting, **extra)
    env = domain.make_env(3)
    ctx = context_after(env, [31, 32, 33], steps=3)
    actions = torch.randint(0, env.spec.num_actions, (3, 20), generator=torch.Generator().manual_seed(4))
    model = domain.make_model()
    assert model.potential_kind == potential and (model.component_weights is None) == (weighting == "uniform")
    g = guidance_weights(model, actions, ctx, exact_difference=True).double()
    x_ref = model.reference(ctx)
    phi = model.potential(model.state(actions, ctx), x_ref).double()
    for agent in (0, 5, 13):
        demand = ctx.demand.clone()
        demand[:, agent] = 0.0
        without = model.potential(model.state(actions, dataclasses.replace(ctx, demand=demand)), x_ref).double()
        torch.testing.assert_close(g[:, agent], phi - without, rtol=1e-4, atol=1e-4 * (1 + float(phi.abs().max())))


def test_state_without_active_agents_is_committed_over_capacity(model_case) -> None:
    domain, model, ctx, actions = model_case
    idle = dataclasses.replace(ctx, demand=torch.zeros_like(ctx.demand))
    expected = (ctx.committed / ctx.capacity).reshape(3, -1)  # server-major: 2k + r
    torch.testing.assert_close(model.state(actions, idle), expected)
    # the same from the simulator's loads, before any job of this step is dispatched
    env = domain.make_env(1)
    env.reset([41])
    sim_ctx = env.model_context()
    sim_idle = dataclasses.replace(sim_ctx, demand=torch.zeros_like(sim_ctx.demand))
    x = model.state(torch.zeros(1, 20, dtype=torch.long), sim_idle)
    committed = env.sim.running_load + env.sim.queued_load
    assert committed.sum() > 0  # the warm-up filled the cluster
    torch.testing.assert_close(x.reshape(1, -1, 2), committed / env.capacity)


# =============================================================================== reference
def _check_reference_program(model: CloudModel, ctx: CloudContext, x_ref: torch.Tensor) -> None:
    """x_ref solves min sum l^2/(2C) + b l s.t. sum l = min(L, u_max sum C), 0 <= l <= u_max C."""
    e = x_ref.shape[0]
    u_max, eta = model.max_utilisation, model.eta
    x = x_ref.double().reshape(e, -1, 2)
    cap = ctx.capacity.double()  # [M, 2]
    assert (x >= 0).all() and (x <= u_max * (1 + 1e-6)).all()
    for r in range(2):
        c = cap[:, r]
        b = eta * (c.min() / c).sqrt()
        for i in range(e):
            target = min(float(ctx.offered[i, r]), u_max * float(c.sum()))
            placed = float((x[i, :, r] * c).sum())
            assert placed == pytest.approx(target, rel=1e-4, abs=1e-6)
            inside = (x[i, :, r] > 1e-6) & (x[i, :, r] < u_max - 1e-6)
            if inside.sum() >= 2:  # KKT: x_k + b_k = nu on every free server
                level = x[i, inside, r] + b[inside]
                assert float(level.max() - level.min()) < 1e-5
            # servers at a bound sit on the right side of the water level
            if inside.any():
                nu = float((x[i, inside, r] + b[inside]).mean())
                assert (b[x[i, :, r] <= 1e-6] >= nu - 1e-5).all()
                assert (b[x[i, :, r] >= u_max - 1e-6] + u_max <= nu + 1e-5).all()


def test_waterfill_reference_solves_the_program_on_env_contexts() -> None:
    domain = small_domain()
    env = domain.make_env(3)
    model = domain.make_model()
    gen = torch.Generator().manual_seed(2)
    env.reset([51, 52, 53])
    for _ in range(4):
        ctx = env.model_context()
        _check_reference_program(model, ctx, model.reference(ctx))
        env.step(random_actions(env, gen))


@pytest.mark.parametrize("u_max", [1.0, 0.6])
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3, 0.59, 0.9, 1.5])
def test_waterfill_reference_on_hand_contexts_including_the_clamp(u_max: float, fraction: float) -> None:
    # heterogeneous servers: 8 / 16 / 32 vCPU, 2 / 4 / 8 GiB per vCPU
    cpu = [8.0, 8.0, 16.0, 32.0, 16.0, 8.0]
    mem = [16.0, 64.0, 64.0, 128.0, 128.0, 32.0]
    offered = [fraction * sum(cpu), 0.5 * fraction * sum(mem)]
    ctx = hand_context(cpu, mem, [[0.0, 0.0]] * 6, offered, [[1.0, 2.0]])
    model = CloudModel(6, make_allocation_layer("waterfill"), eta=0.2, max_utilisation=u_max)
    x_ref = model.reference(ctx)
    _check_reference_program(model, ctx, x_ref)
    if fraction * 1.0 > u_max:  # offered CPU above the fleet's bound: the reference is "full"
        torch.testing.assert_close(x_ref.reshape(6, 2)[:, 0], torch.full((6,), u_max))
    if 0 < fraction < 0.3:  # light load: large servers get a higher target than small ones
        x = x_ref.reshape(6, 2)[:, 0]
        assert x[3] > x[2] > x[0]


def test_cvxpylayers_reference_matches_waterfill() -> None:
    domain = small_domain()
    env = domain.make_env(2)
    ctx = context_after(env, [61, 62], steps=2)
    waterfill = domain.make_model()
    cvx = small_domain(reference_layer="cvxpylayers").make_model()
    assert type(cvx.layer).__name__ == "CvxpyAllocationLayer"
    torch.testing.assert_close(cvx.reference(ctx), waterfill.reference(ctx), rtol=0, atol=1e-5)
    # and on a clamped context (offered CPU above capacity)
    hot = dataclasses.replace(ctx, offered=ctx.offered * torch.tensor([3.0, 1.0]))
    torch.testing.assert_close(cvx.reference(hot), waterfill.reference(hot), rtol=0, atol=1e-5)


def test_reference_is_exogenous_and_builds_no_graph() -> None:
    domain = small_domain()
    model = domain.make_model()
    # two copies of the same scenarios driven by different policies: the clusters differ,
    # the offered load and hence the reference do not
    seeds = [71, 72]
    a, b = domain.make_env(2), domain.make_env(2)
    a.reset(seeds)
    b.reset(seeds)
    gen = torch.Generator().manual_seed(9)
    rule = LeastLoaded()
    rule.reset(2, 20, torch.Generator())
    clusters_differ = False
    for _ in range(a.spec.horizon):
        ca, cb = a.model_context(), b.model_context()
        assert torch.equal(ca.offered, cb.offered)
        assert torch.equal(model.reference(ca), model.reference(cb))
        clusters_differ |= not torch.equal(ca.committed, cb.committed)
        a.step(rule(ClusterView.of(a.sim, a.candidates), a.current_jobs()))
        b.step(random_actions(b, gen))
    assert clusters_differ
    # same context, other committed loads and demands: same reference
    ctx = context_after(a, seeds, steps=1)
    other = dataclasses.replace(ctx, committed=ctx.committed * 3 + 1, demand=ctx.demand.flip(1))
    assert torch.equal(model.reference(ctx), model.reference(other))
    # no autograd graph, even when the inputs require grad and grad mode is on
    with torch.enable_grad():
        leafy = dataclasses.replace(
            ctx,
            offered=ctx.offered.clone().requires_grad_(True),
            capacity=ctx.capacity.clone().requires_grad_(True),
        )
        x_ref = model.reference(leafy)
    assert not x_ref.requires_grad and x_ref.grad_fn is None
    # guidance for different actions uses one and the same reference
    acts = [torch.randint(0, 8, (2, 20), generator=gen) for _ in range(2)]
    x_refs = []
    original = model.reference_state

    def spy(context):
        out = original(context)
        x_refs.append(out)
        return out

    model.reference_state = spy  # type: ignore[method-assign]
    try:
        for act in acts:
            guidance_weights(model, act, ctx)
    finally:
        del model.reference_state
    assert len(x_refs) == 2 and torch.equal(x_refs[0], x_refs[1])


# =============================================================================== guidance sign
def test_guidance_sign_on_a_hand_built_context() -> None:
    # four identical servers (16 vCPU, 64 GiB) and half the fleet offered: x_ref = 0.5 everywhere
    cpu, mem = [16.0] * 4, [64.0] * 4
    committed = [[24.0, 96.0], [0.0, 0.0], [8.0, 32.0], [8.0, 32.0]]  # 150 %, 0 %, 50 %, 50 %
    offered = [0.5 * 64, 0.5 * 256]
    ctx = hand_context(cpu, mem, committed, offered, [[2.0, 8.0], [2.0, 8.0]])
    # the paper's potential 1/2 ||x - x_ref||^2, for which the hand values below hold
    model = CloudModel(4, make_allocation_layer("waterfill"), eta=0.2, max_utilisation=1.0, potential="distance")
    torch.testing.assert_close(model.reference(ctx), torch.full((1, 8), 0.5))
    actions = torch.tensor([[0, 1]])  # agent 0 -> overloaded server, agent 1 -> empty server
    g = guidance_weights(model, actions, ctx)
    assert g[0, 0] > 0 and g[0, 1] < 0
    # hand value: z = (2/16, 8/64) on the chosen server; x - x_ref there = 1.125 - 0.5 (agent 0)
    torch.testing.assert_close(g[0, 0], torch.tensor((1.5 + 0.125 - 0.5) * (0.125 + 0.125)))
    torch.testing.assert_close(g[0, 1], torch.tensor((0.0 + 0.125 - 0.5) * (0.125 + 0.125)))
    torch.testing.assert_close(g, guidance_weights(_generic(model), actions, ctx))

    # heterogeneous fleet: the sign follows committed utilisation against the reference
    cpu, mem = [8.0, 32.0, 16.0], [16.0, 256.0, 64.0]
    committed = [[12.0, 24.0], [1.0, 8.0], [8.0, 32.0]]
    ctx = hand_context(cpu, mem, committed, [0.5 * 56, 0.2 * 336], [[1.0, 2.0], [1.0, 2.0]])
    model = CloudModel(3, make_allocation_layer("waterfill"), potential="distance")
    x_ref = model.reference(ctx).reshape(3, 2)
    util = torch.tensor(committed) / torch.tensor([cpu, mem]).T
    assert (util[0] > x_ref[0] + 0.5).all() and (util[1] < x_ref[1] - 0.1).all()
    g = guidance_weights(model, torch.tensor([[0, 1]]), ctx)
    assert g[0, 0] > 0 and g[0, 1] < 0


# =============================================================================== heuristics
def test_every_heuristic_plays_a_full_episode() -> None:
    domain = small_domain()
    env = domain.make_env(3)
    seeds = domain.test_seeds(3)
    assert set(domain.heuristics()) == set(HEURISTICS)  # the domain offers every rule (the list is pinned in test_heuristics.py)
    for name, factory in domain.heuristics().items():
        result = evaluate_heuristic(factory, env, seeds, seed=0)
        assert len(result.returns) == 3, name
        assert all(math.isfinite(r) and r <= 0 for r in result.returns), name
        assert all(math.isfinite(v) for v in result.info.values()), name


def test_best_fit_beats_random_on_a_loaded_cluster() -> None:
    # N = 40 (M = 20), default load (70 % of the fleet's vCPU on average), 20 steps after a
    # 10-step warm-up, 8 held-out scenarios. Measured: Best-Fit about -0.7, Random about -24
    # (Random ignores the loads, so queues build; Best-Fit packs each job into free capacity,
    # seeing the placements made earlier in the same step). The gap is more than 20x the
    # Best-Fit return, so the comparison does not hinge on the seeds.
    domain = CloudDomain.from_config(40, {"horizon": 20, "warmup": 10})
    seeds = domain.test_seeds(8)
    env = domain.make_env(len(seeds))
    h = domain.heuristics()
    best_fit = evaluate_heuristic(h["best_fit"], env, seeds, seed=0)
    random = evaluate_heuristic(h["random"], env, seeds, seed=0)
    assert best_fit.mean >= random.mean
    assert best_fit.mean > random.mean + 1.0


def test_headroom_random_beats_the_deterministic_simultaneous_rules() -> None:
    # Same setting as above. Measured (random seeds 0, 1, 2): Headroom-random -1.0 / -1.3 /
    # -1.2, Least-loaded -5.2, Simultaneous Best-Fit -24.1. All three decide at once from the
    # same snapshot; the deterministic ones herd dispatchers that share servers onto the same
    # one, the randomised one spreads them by headroom.
    domain = CloudDomain.from_config(40, {"horizon": 20, "warmup": 10})
    seeds = domain.test_seeds(8)
    env = domain.make_env(len(seeds))
    h = domain.heuristics()
    spread = evaluate_heuristic(h["headroom_random"], env, seeds, seed=0).mean
    assert spread > evaluate_heuristic(h["least_loaded"], env, seeds, seed=0).mean + 2.0
    assert spread > evaluate_heuristic(h["best_fit_simultaneous"], env, seeds, seed=0).mean + 10.0


# =============================================================================== learners
@pytest.mark.parametrize("algo", ["dgpg", "mappo", "ippo"])
def test_each_learner_trains_one_episode(algo: str) -> None:
    cfg = RunConfig(
        domain="cloud",
        algo=algo,
        agents=12,
        episodes=1,
        envs=2,
        seed=3,
        threads=1,
        domain_config={"horizon": 8, "warmup": 3},
    )
    domain, trainer = build(cfg)
    assert isinstance(domain, CloudDomain)
    metrics = trainer.train_episode(domain.train_seeds(0, cfg.envs, cfg.seed))
    for key in ("episodic_return", "value_loss", "policy_loss", "entropy", "approx_kl", "explained_variance"):
        assert math.isfinite(metrics[f"train/{key}"]), (key, metrics[f"train/{key}"])
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert ("guidance/guidance_mean" in metrics) == (algo == "dgpg")


def test_dgpg_with_the_cvxpylayers_reference_trains_one_episode() -> None:
    cfg = RunConfig(
        domain="cloud",
        algo="dgpg",
        agents=8,
        episodes=1,
        envs=1,
        seed=1,
        threads=1,
        domain_config={"horizon": 6, "warmup": 3, "reference_layer": "cvxpylayers"},
    )
    domain, trainer = build(cfg)
    assert type(trainer.model.layer).__name__ == "CvxpyAllocationLayer"  # type: ignore[union-attr]
    metrics = trainer.train_episode(domain.train_seeds(0, cfg.envs, cfg.seed))
    assert all(math.isfinite(v) for v in metrics.values()), metrics


# =============================================================================== scale
def test_scale_smoke_n1500() -> None:
    # measured: about 0.02 s for build, reset, 2 steps and one guidance call
    domain = CloudDomain.from_config(1500, {"horizon": 2, "warmup": 2})
    m = domain.fleet.num_servers
    assert m == 750 and domain.candidates.shape == (1500, 8)
    env = domain.make_env(1)
    step = env.reset([2**31 - 2**20])
    assert step.obs.shape == (1, 1500, 9 * 8 + 5) and step.state.shape == (1, 4 * m + 3)
    model = domain.make_model()
    gen = torch.Generator().manual_seed(0)
    for t in range(2):
        actions = random_actions(env, gen)
        if t == 0:
            g = guidance_weights(model, actions, env.model_context())
            assert g.shape == (1, 1500) and torch.isfinite(g).all()
        step = env.step(actions)
        assert step.obs.shape == (1, 1500, 77) and step.reward.shape == (1,)
        assert torch.isfinite(step.reward).all()
    assert bool(step.done.all())


# =============================================================================== reward scale
def test_reward_scale_does_not_grow_with_n() -> None:
    # r_t = -W_t / lambda - beta Q_t: W_t grows with N but so does lambda (arrivals scale
    # with the fleet), and Q_t is a fraction, so the return is "steps of waiting per job"
    # and should not depend on N. LeastLoaded is deterministic, so only the scenarios vary.
    # Measured (16 scenarios per block, horizon 20, warm-up 10): N = 400 / N = 40 ratio
    # 0.89 .. 1.17 over five disjoint blocks of seeds (0.74 .. 1.21 with other horizons);
    # a factor of 2 leaves a wide margin. A return that scaled with N would give ~10.
    returns = {}
    for n in (40, 400):
        domain = CloudDomain.from_config(n, {"horizon": 20, "warmup": 10})
        seeds = domain.test_seeds(16)
        returns[n] = evaluate_heuristic(domain.heuristics()["least_loaded"], domain.make_env(16), seeds, seed=0).mean
    assert returns[40] < 0 and returns[400] < 0
    ratio = returns[400] / returns[40]
    assert 0.5 <= ratio <= 2.0, returns


def test_a_repeated_reset_restores_the_same_state_and_trajectory() -> None:
    """Evaluation resets to the same seeds every time: the kept post-warm-up state gives
    bit-identical episodes, also after resets to other seeds in between."""
    from guidedmarl import get_domain

    env = get_domain("cloud").from_config(20, {"horizon": 6, "warmup": 5}).make_env(3)
    gen = torch.Generator().manual_seed(0)
    actions = [torch.randint(0, env.spec.num_actions, (3, 20), generator=gen) for _ in range(6)]

    def episode(seeds: list[int]) -> list[torch.Tensor]:
        out = [env.reset(seeds).obs]
        for a in actions:
            step = env.step(a)
            out += [step.obs, step.reward, env.sim.running_load.clone()]
        return out

    first = episode([1, 2, 3])
    second = episode([1, 2, 3])  # computed again, then kept
    assert env._warm is not None and env._warm[0] == (1, 2, 3)
    third = episode([1, 2, 3])  # restored
    other = episode([4, 5, 6])  # another scenario in between
    fourth = episode([1, 2, 3])
    for run in (second, third, fourth):
        assert all(torch.equal(a, b) for a, b in zip(first, run))
    assert not torch.equal(first[0], other[0])


def test_the_episode_reference_is_solved_once_and_equals_the_per_step_reference() -> None:
    """One batched solve per episode (the offered load is the scenario's), bit-identical to
    solving each step apart; a new episode, a changed offered load or a context without the
    episode's loads take the per-step path."""
    domain = CloudDomain.from_config(30, {"horizon": 8, "warmup": 3})
    env, model = domain.make_env(2), domain.make_model()
    calls = []
    solve = model.layer.forward
    model.layer.forward = lambda *a, **k: calls.append(a[0].shape[0]) or solve(*a, **k)  # type: ignore[method-assign]
    for episode in range(2):
        env.reset(domain.train_seeds(episode, 2, 0))
        before = len(calls)
        for _ in range(env.spec.horizon):
            ctx = env.model_context()
            batched = model.reference(ctx)
            alone = model.reference(dataclasses.replace(ctx, episode_offered=None))
            assert torch.equal(batched, alone)
            hot = dataclasses.replace(ctx, offered=ctx.offered * 1.5)  # not the episode's load: solved apart
            assert torch.equal(model.reference(hot), model.reference(dataclasses.replace(hot, episode_offered=None)))
            env.step(torch.zeros(2, 30, dtype=torch.long))
        steps = env.scenario.offered_load.shape[1]
        # per step: the plain and the changed context; once per episode: every step of the scenario
        assert calls[before:].count(2 * 2 * steps) == 1
        assert len(calls[before:]) == 1 + 3 * env.spec.horizon


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sc: sc.cpu.__setitem__(sc.active, 64.0), "exceeds the capacity of one of its candidate servers"),
        (lambda sc: sc.mem.__setitem__(sc.active, -1.0), "non-positive vCPU or GiB"),
        (lambda sc: sc.duration.__setitem__(sc.active, 0), "duration below one step"),
    ],
)
def test_invalid_scenario_jobs_are_refused_at_reset(monkeypatch: pytest.MonkeyPatch, edit, message: str) -> None:
    """The simulator's value checks run once per scenario (at reset), not at every dispatch: a job
    that could never start, or a malformed one, is named before any step."""
    import guidedmarl_domains.cloud.env as cloud_env

    real = cloud_env.generate_scenarios

    def broken(*args, **kwargs):
        sc = real(*args, **kwargs)
        edit(sc)
        return sc

    env = small_domain().make_env(2)
    assert not env.sim.validate
    env.reset([0, 1])  # the real scenarios pass
    monkeypatch.setattr(cloud_env, "generate_scenarios", broken)
    with pytest.raises(ValueError, match=message):
        env.reset([2, 3])
