"""Action masks (discrete) and action bounds (continuous) in the environment contract."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from guidedmarl import get_domain, register_domain
from guidedmarl.adapters.pettingzoo import as_parallel_env
from guidedmarl.config import RunConfig
from guidedmarl.env import EnvSpec
from guidedmarl.errors import DomainError
from guidedmarl.experiment import run_experiment
from guidedmarl.training.networks import Actor


def test_the_actor_never_chooses_a_masked_option() -> None:
    actor = Actor(5, 7, [16], True, num_actions=4)
    obs = torch.randn(3, 5, 7)
    mask = torch.zeros(3, 5, 4, dtype=torch.bool)
    mask[..., 2] = True
    mask[0, 0, 3] = True
    for _ in range(20):
        actions, logp, _ = actor.sample(obs, torch.ones(3, 5, dtype=torch.bool), mask)
        assert mask.gather(-1, actions.unsqueeze(-1)).all() and torch.isfinite(logp).all()
    assert mask.gather(-1, actor.mode(obs, None, mask).unsqueeze(-1)).all()
    dist = actor.distribution(obs, mask)
    assert torch.isfinite(actor.entropy(dist)).all()
    assert torch.allclose(dist.probs[1:, :, 2], torch.ones(2, 5))  # one allowed option: probability 1


def _masked_bins(bins: Any, forbidden: int, none_allowed: bool = False) -> type:
    class MaskedBins(bins.BinsEnv):
        """The bins example with option ``forbidden`` masked; its step refuses that option."""

        def _mask(self, step: Any) -> Any:
            mask = torch.ones(self.num_envs, self.spec.num_agents, self.spec.num_actions, dtype=torch.bool)
            mask[..., forbidden] = False
            if none_allowed:
                mask[:] = False
            step.action_mask = mask
            return step

        def reset(self, seeds: list[int]) -> Any:
            return self._mask(super().reset(seeds))

        def step(self, actions: Any) -> Any:
            actions = self.check_actions(actions)
            assert not (actions == forbidden).any(), "a masked option was chosen"
            return self._mask(super().step(actions))

    return MaskedBins


def _masked_domain(bins: Any, forbidden: int, none_allowed: bool = False) -> str:
    """Register the bins domain with :func:`_masked_bins`'s environment under its own name; return the name.

    A registered subclass, not a patch of ``bins.BinsEnv``: another test may have re-registered
    ``bins`` from a second import of the example file (``--domain path.py:BinsDomain``), and a
    patch of the fixture's module would then silently not reach the run.
    """
    env_cls = _masked_bins(bins, forbidden, none_allowed)
    name = f"bins_masked_{forbidden}{'_none' if none_allowed else ''}"

    class MaskedDomain(bins.BinsDomain):
        def make_env(self, num_envs: int) -> Any:
            return env_cls(num_envs, self.num_agents, self.settings)

    MaskedDomain.name = name
    register_domain(MaskedDomain, replace=True)
    return name


@pytest.mark.parametrize("algo", ["mappo", "dgpg"])
def test_training_and_evaluation_respect_the_mask(bins: Any, tmp_path: Any, algo: str) -> None:
    name = _masked_domain(bins, forbidden=0)
    cfg = RunConfig(domain=name, algo=algo, agents=6, episodes=2, envs=2, out=tmp_path / "run",
                    domain_config={"horizon": 4}, eval={"test_scenarios": 2, "validation_scenarios": 1})  # fmt: skip
    result = run_experiment(cfg)  # the environment's step asserts that option 0 never comes
    assert result.final_test_reward == result.final_test_reward


def test_a_mask_that_allows_nothing_is_named(bins: Any, tmp_path: Any) -> None:
    name = _masked_domain(bins, forbidden=0, none_allowed=True)
    cfg = RunConfig(domain=name, algo="mappo", agents=6, episodes=1, out=tmp_path / "run", domain_config={"horizon": 3},
                    eval={"test_scenarios": 2, "validation_scenarios": 1, "heuristics": False})  # fmt: skip
    with pytest.raises(DomainError, match=r"MaskedBins.reset: action_mask allows no option for \d+ active agent"):
        run_experiment(cfg)


def test_masks_reach_pettingzoo_users_in_infos(bins: Any) -> None:
    env = as_parallel_env(get_domain(_masked_domain(bins, forbidden=1)).from_config(3, {"horizon": 3}).make_env(1))
    _, infos = env.reset(seed=0)
    assert infos["agent_0"]["action_mask"].tolist()[1] == 0 and infos["agent_0"]["action_mask"].sum() >= 1


def test_continuous_bounds_are_checked_and_become_the_box() -> None:
    spec = EnvSpec(num_agents=2, obs_dim=3, state_dim=3, horizon=4, action_kind="continuous", action_dim=2,
                   action_low=(0.0, -1.0), action_high=(1.0, 1.0))  # fmt: skip
    assert spec.action_low == (0.0, -1.0)
    with pytest.raises(ValueError, match="action_low needs continuous actions and action_dim = 2"):
        EnvSpec(num_agents=2, obs_dim=3, state_dim=3, horizon=4, action_kind="continuous", action_dim=2, action_low=(0.0,))
    mpe = pytest.importorskip("mpe2.simple_spread_v3", reason="the mpe extra is not installed")
    from guidedmarl.adapters.from_pettingzoo import PettingZooVecEnv

    env = PettingZooVecEnv(lambda: mpe.parallel_env(N=3, max_cycles=25, continuous_actions=True), 1, 5)
    assert env.spec.action_low == (0.0,) * 5 and env.spec.action_high == (1.0,) * 5
    box = as_parallel_env(env).action_space("agent_0")
    assert box.low.tolist() == [0.0] * 5 and box.high.tolist() == [1.0] * 5
