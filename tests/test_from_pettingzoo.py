"""A PettingZoo environment in: MPE's simple_spread (mpe2) through the adapter, the domain and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test
from typer.testing import CliRunner

from guidedmarl import get_domain
from guidedmarl.adapters.from_pettingzoo import PettingZooVecEnv
from guidedmarl.adapters.pettingzoo import as_parallel_env
from guidedmarl.cli import app
from guidedmarl.errors import ConfigError

simple_spread = pytest.importorskip("mpe2.simple_spread_v3", reason="the mpe extra is not installed: pip install -e '.[mpe]'")
runner = CliRunner()


def _factory(**kwargs):
    return lambda: simple_spread.parallel_env(N=3, max_cycles=25, **kwargs)


def test_the_adapter_stacks_agents_and_environments() -> None:
    env = PettingZooVecEnv(_factory(), num_envs=2, horizon=5)
    spec = env.spec
    assert (spec.num_agents, spec.obs_dim, spec.state_dim, spec.action_kind, spec.num_actions) == (3, 18, 54, "discrete", 5)
    step = env.reset([1, 2])
    assert step.obs.shape == (2, 3, 18) and step.state.shape == (2, 54) and step.active.all()
    reference = simple_spread.parallel_env(N=3, max_cycles=25)
    obs, _ = reference.reset(seed=2)
    assert np.allclose(step.obs[1].numpy(), np.stack([obs[a] for a in reference.possible_agents]))
    total = torch.zeros(2)
    for t in range(5):
        step = env.step(torch.zeros(2, 3, dtype=torch.long))
        total += step.reward
        assert step.done.tolist() == [t == 4] * 2
    assert torch.isfinite(total).all() and (total < 0).all()  # simple_spread's rewards are negative distances


def test_team_reward_is_the_sum_or_the_mean_of_the_agents_rewards() -> None:
    rewards = {}
    for reduction in ("sum", "mean"):
        env = PettingZooVecEnv(_factory(), num_envs=1, horizon=3, team_reward=reduction)
        env.reset([0])
        rewards[reduction] = float(env.step(torch.zeros(1, 3, dtype=torch.long)).reward[0])
    assert rewards["sum"] == pytest.approx(3 * rewards["mean"])


def test_same_seeds_same_episode_and_continuous_actions_are_clipped() -> None:
    env = PettingZooVecEnv(_factory(continuous_actions=True), num_envs=1, horizon=4)
    assert env.spec.action_kind == "continuous" and env.spec.action_dim == 5
    runs = []
    for _ in range(2):
        env.reset([7])
        runs.append([env.step(torch.full((1, 3, 5), 10.0)).reward.item() for _ in range(4)])  # beyond the box [0, 1]
    assert runs[0] == runs[1]


def test_round_trip_back_to_pettingzoo_passes_its_api_test() -> None:
    parallel_api_test(as_parallel_env(PettingZooVecEnv(_factory(), num_envs=1, horizon=10)), num_cycles=10)


def test_domain_from_the_prefix_counts_the_agents_and_refuses_another_n() -> None:
    cls = get_domain("pettingzoo:mpe2.simple_spread_v3")
    domain = cls.from_config(None, {"kwargs": {"N": 4}, "horizon": 5})
    assert domain.num_agents == 4 and domain.make_model() is None
    with pytest.raises(ConfigError, match="has 4 agents; got --agents 3"):
        cls.from_config(3, {"kwargs": {"N": 4}})
    with pytest.raises(ConfigError, match="cannot import 'mpe2.no_such_env'"):
        get_domain("pettingzoo:mpe2.no_such_env").from_config(None, {})


def test_a_short_mappo_run_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--domain", "pettingzoo:mpe2.simple_spread_v3", "--algo", "mappo", "--episodes", "2", "--envs", "2",
            "--quiet", "--out", str(out), "--set", "domain_config.horizon=10", "--set", "eval.test_scenarios=3",
            "--set", "eval.validation_scenarios=2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["global_step"] for r in rows] == [0, 20, 40]  # 2 environments x 10 steps per update
    assert all(np.isfinite(r["eval/test_reward"]) for r in rows)
    again = runner.invoke(app, ["run", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "again"), "--quiet"])
    assert again.exit_code == 0, again.output  # the saved config names the environment and runs again
    refused = runner.invoke(app, ["run", "--domain", "pettingzoo:mpe2.simple_spread_v3", "--out", str(tmp_path / "d")])
    assert refused.exit_code == 2 and "needs an analytical model" in refused.output and "--algo mappo" in refused.output


@pytest.mark.parametrize(("algo", "shape"), [("ippo", 3), ("mappo", 2)])
def test_ippo_learns_from_each_agents_own_reward_mappo_from_the_team(algo: str, shape: int, monkeypatch) -> None:
    from guidedmarl.config import RunConfig
    from guidedmarl.experiment import build
    from guidedmarl.training import trainer as trainer_module

    cfg = RunConfig(domain="pettingzoo:mpe2.simple_spread_v3", algo=algo, envs=2, domain_config={"horizon": 6})
    _, trainer = build(cfg)
    ro = trainer.collect([0, 1])
    assert ro.agent_rewards is not None and ro.agent_rewards.shape == (6, 2, 3)
    assert torch.allclose(ro.agent_rewards.sum(-1), ro.rewards)  # the team reward is their sum
    seen = []
    real = trainer_module.compute_gae
    monkeypatch.setattr(trainer_module, "compute_gae", lambda r, *a: seen.append(r.dim()) or real(r, *a))
    trainer.update(ro, 0.0)
    assert seen == [shape]  # [T, E, N] own rewards for IPPO, [T, E] team rewards for MAPPO


def test_the_team_choice_makes_ippo_use_the_team_reward() -> None:
    from guidedmarl.config import RunConfig
    from guidedmarl.experiment import build

    cfg = RunConfig(domain="pettingzoo:mpe2.simple_spread_v3", algo="ippo", domain_config={"horizon": 4},
                    learner={"critic": {"reward": "team"}})  # fmt: skip
    _, trainer = build(cfg)
    ro = trainer.collect([0])
    assert trainer.learning_rewards(ro) is ro.rewards
