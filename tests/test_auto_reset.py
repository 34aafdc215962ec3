"""Episodes that end early and at different steps per environment: auto-reset, GAE masks, bootstraps.

The environment here is a small PettingZoo ``ParallelEnv`` written for the test, whose
episode lengths and returns are known in closed form, so every figure below is checked
against a number worked out by hand, not against the code under test.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from guidedmarl.adapters.from_pettingzoo import PettingZooVecEnv
from guidedmarl.adapters.pettingzoo import as_parallel_env
from guidedmarl.training.rollout import rollout
from guidedmarl.training.trainer import compute_gae


class Countdown(ParallelEnv):
    """Three agents; an episode lasts L in {2, 3, 4} steps (drawn at reset), ending in a terminal state.

    Each present agent earns its action (0 or 1) per step. Agent ``a0`` leaves (terminates)
    after the first step when L >= 3. With ``max_cycles`` < L the episode is truncated instead.
    """

    metadata = {"name": "countdown_v0"}

    def __init__(self, max_cycles: int = 10) -> None:
        self.possible_agents = ["a0", "a1", "a2"]
        self.max_cycles = max_cycles
        self.rng = np.random.default_rng(0)

    def observation_space(self, agent: str) -> spaces.Box:
        return spaces.Box(0.0, 10.0, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(2)

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: np.array([self.length, self.t], dtype=np.float32) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.length, self.t = int(self.rng.integers(2, 5)), 0
        self.agents = list(self.possible_agents)
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, int]):
        self.t += 1
        rewards = {a: float(actions[a]) for a in self.agents}
        end = self.t >= self.length
        cut = not end and self.t >= self.max_cycles
        terms = {a: end or (a == "a0" and self.t == 1 and self.length >= 3) for a in self.agents}
        truncs = {a: cut for a in self.agents}
        obs, infos = self._obs(), {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return obs, rewards, terms, truncs, infos


def _env(num_envs: int, horizon: int, max_cycles: int = 10, **kwargs) -> PettingZooVecEnv:
    return PettingZooVecEnv(functools.partial(Countdown, max_cycles), num_envs, horizon, **kwargs)


def _lengths(seed: int, episodes: int) -> list[int]:
    """The episode lengths Countdown draws after reset(seed): its generator continues across resets."""
    rng = np.random.default_rng(seed)
    return [int(rng.integers(2, 5)) for _ in range(episodes)]


def _ones(step):
    return torch.ones_like(step.active, dtype=torch.long)


def _expected_return(length: int) -> float:
    """Team return of an always-1 policy: a0 is present 1 step if L >= 3 (else L), a1 and a2 L steps each."""
    return (1 if length >= 3 else length) + 2 * length


def test_episodes_end_at_their_own_steps_and_restart() -> None:
    seeds = [3, 11]
    env = _env(2, horizon=9)
    assert env.spec.auto_reset
    traj = rollout(env, _ones, seeds)
    assert traj.dones is not None and traj.terminated is not None
    for k, seed in enumerate(seeds):
        lengths = _lengths(seed, 9)
        ends = np.cumsum(lengths)
        ends = ends[ends <= 9]
        assert torch.nonzero(traj.dones[:, k]).flatten().tolist() == [int(e) - 1 for e in ends]
        assert traj.terminated[:, k].tolist() == traj.dones[:, k].tolist()  # every end here is terminal
        assert traj.returns[k].item() == _expected_return(lengths[0])  # the first episode's return
    # every completed episode's return, in the order the episodes ended
    ended = sorted((int(e) - 1, k, _expected_return(length)) for k, s in enumerate(seeds)
                   for e, length in zip(np.cumsum(_lengths(s, 9)), _lengths(s, 9)) if e <= 9)  # fmt: skip
    assert traj.episode_returns == [r for _, _, r in ended]
    assert not traj.finals  # no time limit was hit


def test_an_agent_that_leaves_is_inactive_until_its_episode_restarts() -> None:
    env = _env(1, horizon=6)
    seed = next(s for s in range(100) if _lengths(s, 1)[0] == 4)
    step = env.reset([seed])
    actives = []
    for _ in range(5):
        step = env.step(torch.ones(1, 3, dtype=torch.long))
        actives.append(step.active[0].tolist())
    # a0 leaves after step 1; the episode ends after step 4 and the new one has every agent
    assert actives[:3] == [[False, True, True]] * 3 and actives[3] == [True, True, True]


def test_a_time_limit_is_a_truncation_with_the_last_step_kept() -> None:
    env = _env(1, horizon=8, max_cycles=2)  # every episode is cut after 2 steps unless it ends there
    seed = next(s for s in range(100) if _lengths(s, 1)[0] == 4)
    traj = rollout(env, _ones, [seed])
    assert traj.dones is not None and traj.terminated is not None
    assert traj.dones[1, 0] and not traj.terminated[1, 0]
    final = traj.finals[1]
    assert final.obs[0, 1].tolist() == [4.0, 2.0]  # the ended episode's last observation: L = 4, t = 2
    assert final.active[0].tolist() == [False, True, True]  # a0 had left; a1, a2 were cut by the limit
    terminal = _env(1, horizon=8, max_cycles=2, truncation="terminal")
    cut = rollout(terminal, _ones, [seed])
    assert cut.terminated is not None and cut.terminated[1, 0] and not cut.finals


def test_the_rollout_horizon_cuts_an_episode_as_a_time_limit() -> None:
    seed = next(s for s in range(100) if _lengths(s, 1)[0] == 4)
    traj = rollout(_env(1, horizon=3), _ones, [seed])
    assert traj.dones is not None and traj.dones[:, 0].tolist() == [False, False, True]
    assert traj.terminated is not None and not traj.terminated[2, 0] and 2 in traj.finals


def test_same_first_seeds_same_sequence_of_episodes() -> None:
    a = rollout(_env(2, horizon=12), _ones, [5, 6])
    b = rollout(_env(2, horizon=12), _ones, [5, 6])
    assert torch.equal(a.rewards, b.rewards) and torch.equal(a.dones, b.dones) and a.episode_returns == b.episode_returns


def test_the_fixed_horizon_mode_keeps_the_old_contract() -> None:
    env = _env(2, horizon=6, auto_reset=False)
    traj = rollout(env, _ones, [3, 11])
    assert traj.dones is None and not env.spec.auto_reset
    for k, seed in enumerate([3, 11]):
        assert traj.returns[k].item() == _expected_return(_lengths(seed, 1)[0])  # then idles to the horizon


def _gae_by_hand(rewards, values, dones, boot, after, gamma, lam):
    """GAE for one environment, episode by episode: no quantity crosses an episode's end."""
    horizon = len(rewards)
    adv = [0.0] * horizon
    start = 0
    for end in [t for t in range(horizon) if dones[t]] + ([horizon - 1] if not dones[-1] else []):
        last_value = boot[end] if dones[end] else after
        acc = 0.0
        for t in range(end, start - 1, -1):
            next_v = last_value if t == end else values[t + 1]
            acc = rewards[t] + gamma * next_v - values[t] + gamma * lam * acc
            adv[t] = acc
        start = end + 1
    return adv


@pytest.mark.parametrize("seed", range(5))
def test_gae_with_episode_ends_matches_an_episode_by_episode_computation(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    horizon, num_envs = 11, 3
    rewards = torch.randn(horizon, num_envs, generator=g, dtype=torch.float64)
    values = torch.randn(horizon, num_envs, generator=g, dtype=torch.float64)
    dones = torch.rand(horizon, num_envs, generator=g) < 0.3
    boot = torch.where(dones, torch.randn(horizon, num_envs, generator=g, dtype=torch.float64), 0.0)
    after = torch.randn(num_envs, generator=g, dtype=torch.float64)
    got = compute_gae(rewards, values, 0.97, 0.9, dones, boot, after)
    for k in range(num_envs):
        want = _gae_by_hand(rewards[:, k].tolist(), values[:, k].tolist(), dones[:, k].tolist(), boot[:, k].tolist(),
                            float(after[k]), 0.97, 0.9)  # fmt: skip
        assert got[:, k].tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)
    per_agent = compute_gae(rewards, values.unsqueeze(-1).expand(-1, -1, 2), 0.97, 0.9, dones, boot.unsqueeze(-1).expand(-1, -1, 2),
                            after.unsqueeze(-1).expand(-1, 2))  # fmt: skip
    assert torch.allclose(per_agent, got.unsqueeze(-1).expand(-1, -1, 2))


def test_gae_without_ends_and_a_zero_next_value_is_the_fixed_horizon_gae() -> None:
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(7, 2, generator=g), torch.randn(7, 2, generator=g)
    fixed = compute_gae(rewards, values, 0.99, 0.95)
    masked = compute_gae(rewards, values, 0.99, 0.95, torch.zeros(7, 2, dtype=torch.bool))
    assert torch.allclose(fixed, masked, atol=1e-6)


def test_the_trainer_masks_ends_and_bootstraps_only_truncations(monkeypatch) -> None:
    from guidedmarl.config import PPOConfig
    from guidedmarl.learners import LearnerConfig, resolve_learner
    from guidedmarl.training.trainer import Trainer

    env = _env(2, horizon=8, max_cycles=3)
    trainer = Trainer(env, PPOConfig(hidden=[8]), LearnerConfig(**resolve_learner("mappo", None)), None, seed=0, total_episodes=2)
    ro = trainer.collect([3, 11])
    assert ro.dones is not None and ro.bootstrap is not None and ro.next_value is not None
    traj_terminated = rollout(_env(2, horizon=8, max_cycles=3), _ones, [3, 11]).terminated
    truncated = ro.dones & ~traj_terminated
    assert bool(truncated.any()) and bool((ro.dones & traj_terminated).any())  # both kinds of end occur
    assert bool((ro.bootstrap[~truncated] == 0).all()) and bool((ro.bootstrap[truncated] != 0).all())
    seen = {}
    real = compute_gae

    def spy(*args):
        seen["dones"] = args[4]
        return real(*args)

    monkeypatch.setattr("guidedmarl.training.trainer.compute_gae", spy)
    metrics = trainer.update(ro, 0.0)
    assert seen["dones"] is ro.dones and np.isfinite(metrics["value_loss"])
    assert ro.info["episodes_ended"] >= 2


def test_the_pettingzoo_view_of_an_auto_reset_env_reports_the_ended_episode() -> None:
    from pettingzoo.test import parallel_api_test

    parallel_api_test(as_parallel_env(_env(1, horizon=6)), num_cycles=20)
    outward = as_parallel_env(_env(1, horizon=6))
    seed = next(s for s in range(100) if _lengths(s, 1)[0] == 2)
    outward.reset(seed=seed)
    _, _, terms, truncs, _ = outward.step({a: 1 for a in outward.agents})
    _, _, terms, truncs, _ = outward.step({a: 1 for a in outward.agents})
    assert all(terms.values()) and not any(truncs.values()) and outward.agents == []
