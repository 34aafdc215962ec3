"""PettingZoo ``ParallelEnv`` view of a guidedmarl environment (one environment of a batch).

guidedmarl trains on batched tensors; other tools expect PettingZoo's dict-per-agent API.
:func:`as_parallel_env` wraps any :class:`~guidedmarl.env.MultiAgentVecEnv` built with
``num_envs == 1`` so that PettingZoo's API test, its wrappers and other libraries' training
loops can drive it. Every agent receives the shared team reward (or its own, where the
environment gives ``Step.agent_reward``). Agents that have nothing
to do at a step (``active`` false) still submit an action, which the environment ignores;
``infos[agent]["active"]`` says which ones count.

Every agent has its own space objects (PettingZoo's seed test seeds them one by one), and
``state_space`` describes :meth:`GuidedParallelEnv.state` (PettingZoo's ``state_test``).
:func:`parallel_env` builds one from a registered domain, which is the constructor
PettingZoo's ``parallel_seed_test`` expects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from guidedmarl.env import MultiAgentVecEnv, Step


class GuidedParallelEnv(ParallelEnv):
    """Adapter from a batched environment with ``num_envs == 1`` to ``ParallelEnv``."""

    metadata = {"name": "guidedmarl_parallel_v0", "render_modes": []}

    def __init__(self, env: MultiAgentVecEnv) -> None:
        if env.num_envs != 1:
            raise ValueError(f"as_parallel_env needs an environment batch of size 1, got num_envs={env.num_envs}")
        self.env = env
        spec = env.spec
        self.possible_agents = [f"agent_{i}" for i in range(spec.num_agents)]
        self.agents: list[str] = []
        self.observation_spaces = {
            a: spaces.Box(-np.inf, np.inf, shape=(spec.obs_dim,), dtype=np.float32) for a in self.possible_agents
        }
        self.action_spaces = {a: self._action_space() for a in self.possible_agents}
        self.state_space = spaces.Box(-np.inf, np.inf, shape=(spec.state_dim,), dtype=np.float32)
        self._seed = 0
        self._last: Step | None = None

    def _action_space(self) -> spaces.Space:
        spec = self.env.spec
        if spec.action_kind == "discrete":
            return spaces.Discrete(spec.num_actions)
        low = -np.inf if spec.action_low is None else np.asarray(spec.action_low, dtype=np.float32)
        high = np.inf if spec.action_high is None else np.asarray(spec.action_high, dtype=np.float32)
        return spaces.Box(low, high, shape=(spec.action_dim,), dtype=np.float32)

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def state(self) -> np.ndarray:
        """The global state (what a centralised critic sees)."""
        if self._last is None:
            raise RuntimeError("call reset() first")
        return self._last.state[0].numpy().astype(np.float32)

    def _obs_dict(self, step: Step) -> dict[str, np.ndarray]:
        obs = step.obs[0].numpy().astype(np.float32)
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def _infos(self, step: Step) -> dict[str, dict[str, Any]]:
        active = step.active[0].tolist()
        infos: dict[str, dict[str, Any]] = {a: {"active": bool(active[i])} for i, a in enumerate(self.possible_agents)}
        if step.action_mask is not None:  # PettingZoo's convention: infos[agent]["action_mask"], int8
            masks = step.action_mask[0].to(torch.int8).numpy()
            for i, a in enumerate(self.possible_agents):
                infos[a]["action_mask"] = masks[i]
        return infos

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._seed = int(seed)
        else:
            self._seed += 1
        self._last = self.env.reset([self._seed])
        self.agents = list(self.possible_agents)
        return self._obs_dict(self._last), self._infos(self._last)

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("the episode is over: call reset()")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"actions missing for {len(missing)} agent(s), e.g. {missing[:3]}")
        ordered = [actions[a] for a in self.possible_agents]
        if self.env.spec.action_kind == "discrete":
            batch = torch.as_tensor(np.asarray(ordered, dtype=np.int64)).unsqueeze(0)
        else:
            batch = torch.as_tensor(np.asarray(ordered, dtype=np.float32)).unsqueeze(0)
        step = self.env.step(batch)
        self._last = step
        reward = float(step.reward[0])
        done = bool(step.done[0])
        agents = list(self.agents)
        if step.agent_reward is not None:  # agents rewarded apart: each its own
            own = step.agent_reward[0].tolist()
            rewards = {a: float(own[self.possible_agents.index(a)]) for a in agents}
        else:
            rewards = {a: reward for a in agents}
        # a fixed horizon ends the episode by time limit: truncation, not termination; an
        # auto-reset environment says which, and its ended episode's last step is in final
        terminal = done and step.terminated is not None and bool(step.terminated[0])
        terminations = {a: terminal for a in agents}
        truncations = {a: done and not terminal for a in agents}
        shown = step.final if done and step.final is not None else step
        obs, infos = self._obs_dict(shown), self._infos(shown)
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos


def as_parallel_env(env: MultiAgentVecEnv) -> GuidedParallelEnv:
    """Wrap a batch-of-one guidedmarl environment as a PettingZoo ``ParallelEnv``."""
    return GuidedParallelEnv(env)


def parallel_env(domain: str, num_agents: int | None = None, **domain_config: Any) -> GuidedParallelEnv:
    """A fresh ``ParallelEnv`` of a registered domain, e.g. ``parallel_env("cloud", 6, horizon=5)``.

    Args:
        domain: a registered domain name (``guidedmarl domains``) or ``module:Class``.
        num_agents: N (default: the domain's own default).
        **domain_config: the domain's settings (as under ``domain_config`` in a run file).
    """
    from guidedmarl.domain import get_domain

    built = get_domain(domain).from_config(num_agents, dict(domain_config))
    return GuidedParallelEnv(built.make_env(1))
