"""The PettingZoo ParallelEnv adapter passes PettingZoo's own API test."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from guidedmarl import get_domain
from guidedmarl.adapters.pettingzoo import as_parallel_env


def _cloud_parallel_env(agents: int = 6):
    domain = get_domain("cloud").from_config(agents, {"horizon": 5, "warmup": 2})
    return as_parallel_env(domain.make_env(1))


def test_cloud_passes_pettingzoo_parallel_api_test() -> None:
    parallel_api_test(_cloud_parallel_env(), num_cycles=20)


@pytest.mark.parametrize("network", ["braess", "siouxfalls"])
def test_traffic_passes_pettingzoo_parallel_api_test(network: str) -> None:
    domain = get_domain("traffic").from_config(6, {"network": network, "horizon": 5, "train_scenarios": 2})
    parallel_api_test(as_parallel_env(domain.make_env(1)), num_cycles=10)


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
