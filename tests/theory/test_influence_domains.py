"""Local influence z_i and guidance g_i of EVERY registered domain, against independent paths.

For each domain in ``guidedmarl.available_domains()`` (installed entry points, e.g. cloud,
and later power or traffic) plus the example ``bins`` (registered by the ``bins`` fixture),
built with small settings:

* the domain's ``influence`` (closed form, or the generic one if not overridden) equals
  the generic autograd path ``AnalyticalModel.influence(model, ...)`` (dense comparison);
* it equals the state change caused by the agent: discrete actions, x minus
  ``system_state`` recomputed with that agent's one-hot row zeroed (the agent does
  nothing); continuous actions, central finite differences of ``system_state``;
* ``guidance`` equals <x - x_ref, z_i>, and for discrete actions
  ``guidance(exact_difference=True)`` equals d(x) - d(x without agent i).

A domain registered later is picked up automatically. Small settings per domain live in
``SMALL_CONFIGS`` (default ``{}``); a domain that cannot be built with them is skipped with
the reason; a domain whose plug-in fails to load is a failure.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from guidedmarl import AnalyticalModel, ConfigError, available_domains, get_domain
from guidedmarl.guidance.weights import guidance_weights

torch.set_num_threads(1)

NUM_AGENTS = 6
NUM_ENVS = 3
SMALL_CONFIGS: defaultdict[str, dict[str, Any]] = defaultdict(
    dict,
    {
        "cloud": {"horizon": 6, "warmup": 2},
        "bins": {"horizon": 4, "agents_per_bin": 2},
        "power": {"horizon": 4},  # case30: N = 6 generators
        "traffic": {"network": "braess", "horizon": 4},  # 6 packets of the one OD pair, 3 routes
        "pettingzoo": {"env": "mpe2.simple_spread_v3", "kwargs": {"N": 6}, "horizon": 4},  # no model: skipped
    },
)
"""Small domain_config per domain; unknown domains are tried with ``{}`` (their defaults)."""

EXAMPLE_DOMAINS = {"bins"}  # registered on import of examples/custom_domain.py (fixture `bins`)


def domain_names() -> list[str]:
    return sorted(set(available_domains()) | EXAMPLE_DOMAINS)


_BUILT: dict[str, Any] = {}


def build(name: str) -> tuple[Any, Any, Any]:
    """(domain, env, model), cached per name; skips or fails with a clear message."""
    if name not in _BUILT:
        try:
            cls = get_domain(name)
        except ConfigError as exc:
            pytest.fail(f"registered domain {name!r} failed to load: {exc}")
        config = SMALL_CONFIGS[name]
        try:
            domain = cls.from_config(NUM_AGENTS, config)
            _BUILT[name] = (domain, domain.make_env(NUM_ENVS), domain.make_model())
        except Exception as exc:  # noqa: BLE001 - any failure to build means: no small setting known
            _BUILT[name] = exc
    built = _BUILT[name]
    if not isinstance(built, Exception) and built[2] is None:
        pytest.skip(f"domain {name!r} has no analytical model (make_model() is None): nothing to check here")
    if isinstance(built, Exception):
        pytest.skip(
            f"domain {name!r} cannot be built with N={NUM_AGENTS}, E={NUM_ENVS} and domain_config="
            f"{SMALL_CONFIGS[name]!r} ({built!r}); add small settings to SMALL_CONFIGS"
        )
    return built


def random_actions(spec: Any, num_envs: int, gen: torch.Generator) -> Tensor:
    if spec.action_kind == "discrete":
        return torch.randint(0, spec.num_actions, (num_envs, spec.num_agents), generator=gen)
    return 0.5 * torch.randn(num_envs, spec.num_agents, spec.action_dim, generator=gen)


def as_agent_dim_last(z: Tensor, continuous: bool) -> Tensor:
    """Dense influence as ``[E, N, D, action_dim]`` for continuous actions (dense() squeezes 1)."""
    return z.unsqueeze(-1) if continuous and z.dim() == 3 else z


def tolerance(*tensors: Tensor) -> dict[str, float]:
    """rtol/atol for the dtype of the computation, relative to the largest magnitude involved."""
    eps = max(torch.finfo(t.dtype).eps for t in tensors)
    scale = max(float(t.abs().max()) for t in tensors if t.numel()) if any(t.numel() for t in tensors) else 1.0
    return {"rtol": 100 * eps, "atol": 100 * eps * (1.0 + scale)}


def state_without(model: AnalyticalModel, actions: Tensor, ctx: Any, agent: int) -> Tensor:
    """x recomputed with ``agent``'s one-hot row zeroed: the agent does nothing."""
    onehot = model.relax(actions)
    keep = (torch.arange(onehot.shape[1]) != agent).to(onehot.dtype)[:, None]
    return model.system_state(onehot * keep, ctx)


@pytest.mark.parametrize("name", domain_names())  # evaluated at collection: entry points + example
@settings(max_examples=8, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**20), steps=st.integers(0, 3))
def test_domain_influence_and_guidance(name: str, seed: int, steps: int, bins: Any) -> None:
    domain, env, model = build(name)
    spec = env.spec
    continuous = spec.action_kind == "continuous"
    gen = torch.Generator().manual_seed(seed)
    env.reset([seed + k for k in range(NUM_ENVS)])
    for _ in range(min(steps, spec.horizon - 1)):
        try:
            env.step(random_actions(spec, NUM_ENVS, gen))
        except ValueError:  # random continuous actions outside the domain's bounds: stay here
            break
    ctx = env.model_context()
    actions = random_actions(spec, NUM_ENVS, gen)

    x = model.state(actions, ctx)
    x_ref = model.reference(ctx)
    assert x.shape == x_ref.shape == (NUM_ENVS, x.shape[1])
    dim = x.shape[1]
    z = as_agent_dim_last(model.influence(actions, ctx).dense(dim), continuous)
    generic = as_agent_dim_last(AnalyticalModel.influence(model, actions, ctx).dense(dim), continuous)
    assert z.shape[:3] == (NUM_ENVS, spec.num_agents, dim)
    torch.testing.assert_close(z, generic, **tolerance(z, generic))

    if continuous:
        # central finite differences of system_state in the model's dtype, step eps^(1/3)
        relaxed = model.relax(actions)
        eps = torch.finfo(relaxed.dtype).eps
        step = eps ** (1 / 3) * max(1.0, float(relaxed.abs().max()))
        fd = torch.zeros_like(generic)
        for i in range(spec.num_agents):
            for k in range(spec.action_dim):
                delta = torch.zeros_like(relaxed)
                delta[:, i, k] = step
                plus, minus = model.system_state(relaxed + delta, ctx), model.system_state(relaxed - delta, ctx)
                fd[:, i, :, k] = (plus - minus) / (2 * step)
        scale = 1.0 + float(generic.abs().max())
        torch.testing.assert_close(generic, fd, rtol=1e3 * eps ** (2 / 3), atol=1e3 * eps ** (2 / 3) * scale)
    else:
        # [E, N, D]: the state change caused by agent i's chosen option
        without = torch.stack([x - state_without(model, actions, ctx, i) for i in range(spec.num_agents)], dim=1)
        torch.testing.assert_close(z, without, **tolerance(z, without, x))

    g = guidance_weights(model, actions, ctx)
    g = g.unsqueeze(-1) if continuous and g.dim() == 2 else g
    # the gradient of the model's own potential phi (weighted, possibly non-quadratic), by autograd
    leaf = x.detach().requires_grad_(True)
    (grad_phi,) = torch.autograd.grad(model.potential(leaf, x_ref).sum(), leaf)
    expected = torch.einsum("endk,ed->enk" if continuous else "end,ed->en", generic, grad_phi)
    torch.testing.assert_close(g, expected, **tolerance(g, expected, x, x_ref, grad_phi))

    if not continuous:
        exact = guidance_weights(model, actions, ctx, exact_difference=True)
        phi_all = model.potential(x, x_ref)
        change = torch.stack(
            [phi_all - model.potential(state_without(model, actions, ctx, i), x_ref) for i in range(spec.num_agents)],
            dim=1,
        )
        torch.testing.assert_close(exact, change, **tolerance(exact, change, phi_all))
        quadratic = type(model).potential_terms is AnalyticalModel.potential_terms and model.component_weights is None
        if quadratic:  # the paper's potential: D_i = g_i - 1/2 ||z_i||^2
            torch.testing.assert_close(exact, g - 0.5 * z.square().sum(-1), **tolerance(exact, g, phi_all))

