"""The option-scorer actor: one network scores every option from its own feature block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from guidedmarl.config import RunConfig
from guidedmarl.env import EnvSpec
from guidedmarl.errors import ConfigError
from guidedmarl.experiment import build, run_experiment
from guidedmarl.training.networks import AgentMLP, OptionScorer

SMALL_CLOUD = {"horizon": 6, "warmup": 2}


def _permute_options(obs: torch.Tensor, perm: torch.Tensor, k: int, f: int) -> torch.Tensor:
    blocks = obs[..., : k * f].unflatten(-1, (k, f))[..., perm, :].flatten(-2)
    return torch.cat([blocks, obs[..., k * f :]], dim=-1)


@settings(max_examples=20, deadline=None)
@given(
    k=st.integers(1, 6),
    f=st.integers(1, 5),
    shared_features=st.integers(0, 4),
    shared=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_logits_follow_a_renaming_of_the_options(k: int, f: int, shared_features: int, shared: bool, seed: int) -> None:
    torch.manual_seed(seed)
    n = 3
    net = OptionScorer(n, k * f + shared_features, k, f, [8], shared, out_gain=1.0)
    obs = torch.randn(2, n, k * f + shared_features)
    perm = torch.randperm(k)
    logits = net(obs)
    assert logits.shape == (2, n, k)
    torch.testing.assert_close(net(_permute_options(obs, perm, k, f)), logits[..., perm])


def test_an_option_logit_depends_only_on_its_block_and_the_shared_features() -> None:
    torch.manual_seed(0)
    net = OptionScorer(1, 3 * 2 + 1, 3, 2, [8], True, out_gain=1.0)
    obs = torch.randn(1, 1, 7)
    changed = obs.clone()
    changed[..., 2:4] += 1.0  # option 1's block
    diff = (net(changed) - net(obs)).abs().squeeze()
    assert diff[1] > 0 and diff[0] == 0 and diff[2] == 0
    changed = obs.clone()
    changed[..., 6] += 1.0  # the shared feature moves every option
    assert ((net(changed) - net(obs)).abs() > 0).all()


def test_per_agent_scorers_differ_between_agents_and_match_a_shared_one_on_the_active_path() -> None:
    torch.manual_seed(0)
    per_agent = OptionScorer(2, 5, 2, 2, [4], False, out_gain=1.0)
    obs = torch.randn(2, 5).expand(1, 2, 5)  # the same observation for both agents
    out = per_agent(obs)
    assert not torch.allclose(out[0, 0], out[0, 1])  # each agent has its own weights
    shared = OptionScorer(2, 5, 2, 2, [4], True, out_gain=1.0)
    packed = obs[0]  # [S, obs] of the active-only path (no agent axis)
    torch.testing.assert_close(shared(packed), shared(obs)[0])


def test_env_spec_rejects_an_option_layout_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="option_features"):
        EnvSpec(num_agents=2, obs_dim=5, state_dim=1, horizon=1, num_actions=3, option_features=2)
    with pytest.raises(ValueError, match="option_features"):
        EnvSpec(num_agents=2, obs_dim=5, state_dim=1, horizon=1, action_kind="continuous", action_dim=1,
                option_features=1)
    with pytest.raises(ValueError, match="option_features"):
        EnvSpec(num_agents=2, obs_dim=5, state_dim=1, horizon=1, num_actions=2, option_features=-1)


def test_auto_picks_the_scorer_where_the_environment_declares_options() -> None:
    _, cloud = build(RunConfig(domain="cloud", agents=6, domain_config=SMALL_CLOUD))
    assert isinstance(cloud.actor.net, OptionScorer)
    _, power = build(RunConfig(domain="power", domain_config={"horizon": 6}))
    assert isinstance(power.actor.net, AgentMLP)
    _, mlp = build(RunConfig(domain="cloud", agents=6, domain_config=SMALL_CLOUD, ppo={"actor": "mlp"}))
    assert isinstance(mlp.actor.net, AgentMLP)


def test_asking_for_the_scorer_without_option_features_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="ppo.actor = 'option_scorer'"):
        build(RunConfig(domain="power", domain_config={"horizon": 6}, ppo={"actor": "option_scorer"}))


def test_the_domain_chooses_the_evaluation_mode_and_the_run_records_it(tmp_path: Path) -> None:
    cfg = RunConfig(domain="cloud", agents=6, episodes=1, threads=1, out=tmp_path / "cloud",
                    domain_config=SMALL_CLOUD, eval={"test_scenarios": 2, "validation_scenarios": 2,
                                                     "heuristics": False})
    run_experiment(cfg)
    summary = json.loads((tmp_path / "cloud" / "summary.json").read_text())
    assert summary["evaluation_mode"] == "sampled"  # cloud: greedy_evaluation = False
    assert summary["actor"] == "OptionScorer"
    saved = yaml.safe_load((tmp_path / "cloud" / "config.yaml").read_text())
    assert saved["eval"]["deterministic"] is False  # written out, so re-running it does the same
    run_experiment(cfg.model_copy(update={"out": tmp_path / "greedy", "eval": cfg.eval.model_copy(
        update={"deterministic": True})}))
    assert json.loads((tmp_path / "greedy" / "summary.json").read_text())["evaluation_mode"] == "greedy"
