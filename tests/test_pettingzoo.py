"""The PettingZoo ParallelEnv adapter passes PettingZoo's own API, seed and state tests."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, state_test
from pettingzoo.utils.conversions import parallel_to_aec

from guidedmarl import get_domain
from guidedmarl.adapters.pettingzoo import as_parallel_env, parallel_env

# Small settings of every shipped domain (N, domain_config): short horizons keep the tests fast.
SHIPPED = {
    "cloud": (6, {"horizon": 5, "warmup": 2}),
    "power": (None, {"case": "case30", "horizon": 5}),
    "traffic-braess": (6, {"network": "braess", "horizon": 5, "train_scenarios": 2}),
    "traffic-siouxfalls": (6, {"network": "siouxfalls", "horizon": 5, "train_scenarios": 2}),
}


def _factory(key: str):
    agents, config = SHIPPED[key]
    return functools.partial(parallel_env, key.split("-")[0], agents, **config)


def _cloud_parallel_env(agents: int = 6):
    return parallel_env("cloud", agents, horizon=5, warmup=2)


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_shipped_domain_passes_pettingzoo_parallel_api_test(key: str) -> None:
    parallel_api_test(_factory(key)(), num_cycles=10)


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_shipped_domain_passes_pettingzoo_parallel_seed_test(key: str) -> None:
    parallel_seed_test(_factory(key), num_cycles=10)


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_shipped_domain_passes_pettingzoo_state_test(key: str) -> None:
    state_test(parallel_to_aec(_factory(key)()), _factory(key)(), num_cycles=5)


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_shipped_domain_passes_pettingzoo_aec_api_test_after_conversion(key: str) -> None:
    api_test(parallel_to_aec(_factory(key)()), num_cycles=5)


def test_seed_changes_the_scenario() -> None:
    """The seed test alone would also pass for an environment that ignores its seed."""
    env = _cloud_parallel_env()
    first = env.reset(seed=1)[0]
    again = env.reset(seed=1)[0]
    other = env.reset(seed=2)[0]
    assert all(np.array_equal(first[a], again[a]) for a in first)
    assert any(not np.array_equal(first[a], other[a]) for a in first)


def test_every_agent_has_its_own_space_objects() -> None:
    env = _cloud_parallel_env()
    a, b = env.possible_agents[:2]
    assert env.action_space(a) is not env.action_space(b)
    assert env.observation_space(a) is not env.observation_space(b)


def test_bins_example_passes_too(bins) -> None:
    domain = get_domain("bins").from_config(8, {"horizon": 4})
    parallel_api_test(as_parallel_env(domain.make_env(1)), num_cycles=10)


def test_team_reward_shared_and_episode_truncates() -> None:
    env = _cloud_parallel_env()
    obs, infos = env.reset(seed=3)
    assert set(obs) == set(env.possible_agents) and all(isinstance(i["active"], bool) for i in infos.values())
    for _ in range(5):
        actions = {a: env.action_space(a).sample() for a in env.agents}
        obs, rewards, terms, truncs, infos = env.step(actions)
        assert len(set(rewards.values())) == 1
    assert all(truncs.values()) and not any(terms.values()) and env.agents == []
    assert np.isfinite(env.state()).all()


def test_adapter_rejects_batches_and_missing_actions() -> None:
    domain = get_domain("cloud").from_config(4, {"horizon": 3, "warmup": 1})
    with pytest.raises(ValueError, match="batch of size 1"):
        as_parallel_env(domain.make_env(2))
    env = as_parallel_env(domain.make_env(1))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="actions missing"):
        env.step({"agent_0": 0})
