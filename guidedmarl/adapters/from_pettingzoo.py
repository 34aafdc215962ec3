"""Any PettingZoo ``ParallelEnv`` as a guidedmarl environment and domain (the other direction of
:mod:`guidedmarl.adapters.pettingzoo`).

:class:`PettingZooVecEnv` steps E copies of a PettingZoo environment and stacks what they return
into the batched contract (``[E, N, ...]`` tensors in the order of ``possible_agents``):

* observations: each agent's observation flattened to float32 (every agent's space must
  flatten to the same length); the global state is ``env.state()`` where the environment
  implements it, else every agent's observation concatenated;
* actions: ``Discrete(K)`` for every agent (with ``infos[agent]["action_mask"]`` where the
  environment gives one: the policy then chooses among the allowed options), or a ``Box``
  (continuous; its bounds go into the spec, and actions are clipped to them, since the
  policy's Gaussian is unbounded);
* reward: the team reward, the ``sum`` (default) or ``mean`` of the agents' rewards, and each
  agent's own in ``Step.agent_reward`` (IPPO learns from it: ``learner.critic.reward: own``);
* episodes (``auto_reset=True``, the default): each copy's episode ends when its last agent
  terminates or truncates (or after ``horizon`` steps, a time limit), at different steps in
  different copies; the copy then starts its next episode at once (seeded by PettingZoo's
  own generator, so a run stays reproducible from its first seeds). The step says whether
  the end was terminal (every remaining agent terminated) or a time limit, and carries the
  ended episode's last observation for the learner's bootstrap. ``horizon`` is the length of
  one rollout per copy and the longest an episode may last: give it at least the
  environment's own episode length (``max_cycles`` in MPE) so that evaluation scores whole
  episodes. ``truncation="terminal"`` treats time limits as terminal (no bootstrap), as the
  MAPPO paper's code does on MPE.
  With ``auto_reset=False`` every copy runs exactly ``horizon`` steps from its reset (the
  fixed-horizon contract): an environment whose agents are all gone idles until then.
  In both, an agent that terminates or truncates before the others is inactive from then on
  (its actions are ignored and left out of the loss) and adds no reward.

The copies are stepped one after another: PettingZoo environments are Python objects with
dicts per agent, so this path is for interoperability, not for the speed of the shipped
batched domains.

:class:`PettingZooDomain` makes a domain of it. It needs no analytical model (MAPPO and IPPO
need none; DG-PG without one refuses with a message); one can be named in
``domain_config.model`` (``MODULE:CLASS``, an :class:`~guidedmarl.AnalyticalModel` whose
context is a :class:`PettingZooContext`: the raw environments before the step), and
heuristic baselines in ``domain_config.heuristics`` (name -> ``MODULE:CLASS``). From the
command line::

    guidedmarl run --domain pettingzoo:mpe2.simple_spread_v3 --algo mappo \\
        --set domain_config.kwargs.N=3 --set domain_config.horizon=25
    guidedmarl run --domain pettingzoo:mpe2.simple_spread_v3 --algo dgpg \\
        --set domain_config.model=guidedmarl_domains.mpe:SpreadModel

``pettingzoo:MODULE`` calls ``MODULE.parallel_env(**kwargs)``; ``pettingzoo:MODULE:FUNCTION``
calls that function instead.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field, create_model
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.domain import Domain, HeuristicPolicy
from guidedmarl.env import EnvSpec, MultiAgentVecEnv, Step
from guidedmarl.errors import ConfigError, DomainError

PREFIX = "pettingzoo:"


@dataclass
class PettingZooContext:
    """What a model of a PettingZoo environment sees before a step (``model_context``).

    Attributes:
        envs: the E raw PettingZoo environments, in their pre-step state (read, never step them).
        obs: ``[E, N, obs_dim]`` the agents' current observations.
        cache: per-step scratch space, so that a model reading the environments into tensors
            does it once per step however many of its maps use them.
    """

    envs: list[Any]
    obs: Tensor
    cache: dict[str, Any] = field(default_factory=dict)


def _flat_dim(space: spaces.Space, what: str) -> int:
    try:
        return int(spaces.flatdim(space))
    except (NotImplementedError, ValueError, TypeError) as exc:
        raise DomainError(f"{what} {space} cannot be flattened to a vector: {exc}") from None


class PettingZooVecEnv(MultiAgentVecEnv):
    """E copies of a PettingZoo ``ParallelEnv`` behind the batched contract (see the module docstring).

    Args:
        factory: builds one fresh ``ParallelEnv``.
        num_envs: E.
        horizon: steps of every episode.
        team_reward: how the agents' rewards make the team reward: ``"sum"`` or ``"mean"``.
        auto_reset: episodes end when the environment ends them and restart at once (True),
            or every copy runs exactly ``horizon`` steps (False).
        truncation: ``"bootstrap"`` (a time limit is not terminal) or ``"terminal"``.
        global_state: ``"env"`` (``env.state()`` where it exists) or ``"observations"`` (every
            agent's observation concatenated; for environments whose ``state()`` is exactly
            that, such as MPE's, it skips computing the observations twice).
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        num_envs: int,
        horizon: int,
        team_reward: str = "sum",
        auto_reset: bool = True,
        truncation: str = "bootstrap",
        global_state: str = "env",
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.envs = [factory() for _ in range(num_envs)]
        self.num_envs, self.team_reward, self.truncation = num_envs, team_reward, truncation
        first = self.envs[0]
        self.agents = list(first.possible_agents)
        name = type(getattr(first, "unwrapped", first)).__name__
        obs_dims = {a: _flat_dim(first.observation_space(a), f"{name}: the observation space of {a}") for a in self.agents}
        if len(set(obs_dims.values())) != 1:
            raise DomainError(f"{name}: every agent's observation must flatten to one length, got {obs_dims}")
        self._obs_spaces = {a: first.observation_space(a) for a in self.agents}
        act = first.action_space(self.agents[0])
        if any(first.action_space(a) != act for a in self.agents):
            raise DomainError(f"{name}: every agent must have the same action space")
        if isinstance(act, spaces.Discrete):
            kind, num_actions, action_dim = "discrete", int(act.n), 0
        elif isinstance(act, spaces.Box):
            kind, num_actions, action_dim = "continuous", 0, int(np.prod(act.shape))
            self._low = torch.as_tensor(np.array(np.broadcast_to(act.low, act.shape)).reshape(-1), dtype=torch.float32)
            self._high = torch.as_tensor(np.array(np.broadcast_to(act.high, act.shape)).reshape(-1), dtype=torch.float32)
        else:
            raise DomainError(f"{name}: action space {act} is neither Discrete nor Box")
        self._action_space = act
        self._obs_dim = next(iter(obs_dims.values()))
        first.reset(seed=0)
        self._has_state = global_state == "env" and self._state_of(first) is not None
        state_dim = int(np.asarray(first.state()).size) if self._has_state else len(self.agents) * self._obs_dim
        bounds = {}
        if kind == "continuous":
            bounds = {"action_low": tuple(self._low.tolist()), "action_high": tuple(self._high.tolist())}
        self.spec = EnvSpec(num_agents=len(self.agents), obs_dim=self._obs_dim, state_dim=state_dim, horizon=horizon,
                            action_kind=kind, num_actions=num_actions, action_dim=action_dim, auto_reset=auto_reset,
                            **bounds)  # type: ignore[arg-type]
        self._mask: Tensor | None = None  # [E, N, K], from infos[agent]["action_mask"] where the environment gives it
        self.t = 0
        self._live = torch.zeros(num_envs, len(self.agents), dtype=torch.bool)
        self._obs = torch.zeros(num_envs, len(self.agents), self._obs_dim)
        self._episode_t = [0] * num_envs  # steps of each copy's current episode (auto-reset)

    @staticmethod
    def _state_of(env: Any) -> np.ndarray | None:
        try:
            return np.asarray(env.state(), dtype=np.float32).reshape(-1)
        except (NotImplementedError, AttributeError):
            return None

    def _store(self, k: int, obs: dict[str, Any], infos: dict[str, Any]) -> None:
        for i, agent in enumerate(self.agents):
            if agent in obs:
                flat = spaces.flatten(self._obs_spaces[agent], obs[agent])
                self._obs[k, i] = torch.as_tensor(np.asarray(flat, dtype=np.float32))
            mask = (infos.get(agent) or {}).get("action_mask") if self.spec.action_kind == "discrete" else None
            if mask is not None:
                if self._mask is None:
                    self._mask = torch.ones(self.num_envs, len(self.agents), self.spec.num_actions, dtype=torch.bool)
                self._mask[k, i] = torch.as_tensor(np.asarray(mask).astype(bool))

    def _state_row(self, k: int) -> Tensor:
        if self._has_state:
            return torch.as_tensor(self._state_of(self.envs[k]))
        return self._obs[k].reshape(-1).clone()

    def _step_result(self, reward: Tensor, done: Tensor, agent_reward: Tensor | None = None, **ends: Any) -> Step:
        state = torch.stack([self._state_row(k) for k in range(self.num_envs)])
        return Step(obs=self._obs.clone(), state=state.to(torch.float32), active=self._live.clone(), reward=reward,
                    done=done, info={"agents_alive": self._live.float().mean(1)},
                    agent_reward=torch.zeros(self.num_envs, len(self.agents)) if agent_reward is None else agent_reward,
                    action_mask=None if self._mask is None else self._mask.clone(), **ends)  # fmt: skip

    def reset(self, seeds: list[int]) -> Step:
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset needs {self.num_envs} seeds, got {len(seeds)}")
        self._obs.zero_()
        for k, (env, seed) in enumerate(zip(self.envs, seeds)):
            obs, infos = env.reset(seed=int(seed))
            self._store(k, obs, infos)
            self._live[k] = torch.tensor([a in env.agents for a in self.agents])
        self.t = 0
        self._episode_t = [0] * self.num_envs
        return self._step_result(torch.zeros(self.num_envs), torch.zeros(self.num_envs, dtype=torch.bool))

    def step(self, actions: Any) -> Step:
        actions = self.check_actions(actions)
        if self.t >= self.spec.horizon and not self.spec.auto_reset:
            raise RuntimeError("episode is over: call reset(seeds) first")
        if self.spec.action_kind == "continuous":
            actions = torch.maximum(torch.minimum(actions, self._high), self._low)
        chosen = actions.cpu().numpy()
        reward = torch.zeros(self.num_envs)
        per_agent = torch.zeros(self.num_envs, len(self.agents))
        index = {a: i for i, a in enumerate(self.agents)}
        ended = torch.zeros(self.num_envs, dtype=torch.bool)
        terminal = torch.zeros(self.num_envs, dtype=torch.bool)
        final: Step | None = None
        for k, env in enumerate(self.envs):
            if not env.agents:
                continue
            step_actions = {a: (int(chosen[k, index[a]]) if self.spec.action_kind == "discrete"
                                else chosen[k, index[a]].reshape(self._action_space.shape)) for a in env.agents}  # fmt: skip
            obs, rewards, terms, truncs, infos = env.step(step_actions)
            self._store(k, obs, infos)
            for agent, value in rewards.items():
                per_agent[k, index[agent]] = float(value)
            values = [float(r) for r in rewards.values()]
            reward[k] = (sum(values) / len(self.agents)) if self.team_reward == "mean" else sum(values)
            self._live[k] = torch.tensor([a in env.agents and not (terms.get(a) or truncs.get(a)) for a in self.agents])
            if self.spec.auto_reset:
                self._episode_t[k] += 1
                if not bool(self._live[k].any()) or self._episode_t[k] >= self.spec.horizon:
                    ended[k] = True
                    terminal[k] = self.truncation == "terminal" or (
                        bool(self._live[k].sum() == 0) and all(bool(terms.get(a)) and not truncs.get(a) for a in step_actions))
                    if not terminal[k]:
                        final = self._keep_final(final, k, [a for a in step_actions if not terms.get(a)], index)
                    self._restart(k)
        self.t += 1
        if not self.spec.auto_reset:
            return self._step_result(reward, torch.full((self.num_envs,), self.t >= self.spec.horizon), per_agent)
        return self._step_result(reward, ended, per_agent, terminated=terminal, final=final)

    def _keep_final(self, final: Step | None, k: int, present: list[str], index: dict[str, int]) -> Step:
        """``final`` with copy k's last step of its truncated episode written in (made on first use)."""
        if final is None:
            e, n = self.num_envs, len(self.agents)
            final = Step(obs=self._obs.clone(), state=torch.zeros(e, self.spec.state_dim), active=torch.zeros(e, n, dtype=torch.bool),
                         reward=torch.zeros(e), done=torch.zeros(e, dtype=torch.bool))  # fmt: skip
        final.obs[k] = self._obs[k]
        final.state[k] = self._state_row(k).to(torch.float32)
        final.active[k] = torch.tensor([a in present for a in self.agents])
        return final

    def _restart(self, k: int) -> None:
        """Copy k's next episode (its own generator continues: no seed), as auto-reset does."""
        obs, infos = self.envs[k].reset()
        self._obs[k].zero_()
        self._store(k, obs, infos)
        self._live[k] = torch.tensor([a in self.envs[k].agents for a in self.agents])
        self._episode_t[k] = 0

    def model_context(self) -> PettingZooContext:
        return PettingZooContext(self.envs, self._obs.clone())


class PettingZooSettings(BaseModel):
    """Settings of a PettingZoo environment run through :class:`PettingZooVecEnv`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    env: str = Field(min_length=1, description="MODULE (calls MODULE.parallel_env) or MODULE:FUNCTION returning a ParallelEnv")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of that function")
    horizon: int = Field(25, ge=1, le=100_000, description="steps of one rollout per copy and the longest episode "
                         "(at least the environment's own episode length, e.g. MPE's max_cycles)")
    team_reward: Literal["sum", "mean"] = Field("sum", description="team reward from the agents' rewards")
    auto_reset: bool = Field(True, description="episodes end when the environment ends them and restart at once "
                             "(false: every copy runs exactly `horizon` steps)")  # fmt: skip
    global_state: Literal["env", "observations"] = Field(
        "env", description="the critic's state: env.state() where it exists, or the agents' observations concatenated")
    model: str | None = Field(None, description="MODULE:CLASS of an AnalyticalModel of the environment (null: none; "
                              "DG-PG needs one)")  # fmt: skip
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model's class")
    heuristics: dict[str, str] = Field(default_factory=dict, description="baselines: name -> MODULE:CLASS of a "
                                       "HeuristicPolicy (built with no arguments)")  # fmt: skip
    truncation: Literal["bootstrap", "terminal"] = Field(
        "bootstrap", description="a time limit is not terminal (bootstrap from the last state) or is treated as terminal")


def make_factory(settings: PettingZooSettings) -> Callable[[], Any]:
    """The function that builds one environment, or a :class:`ConfigError` naming what is missing."""
    module_name, _, function = settings.env.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"domain_config.env: cannot import '{module_name}' ({exc}); is its package installed?") from None
    fn = getattr(module, function or "parallel_env", None)
    if not callable(fn):
        raise ConfigError(f"domain_config.env: '{module_name}' has no function '{function or 'parallel_env'}'")
    return functools.partial(fn, **settings.kwargs)


def load_object(ref: str, what: str) -> Any:
    """The object ``MODULE:NAME`` names, or a :class:`ConfigError` naming the setting ``what``."""
    module_name, sep, name = ref.partition(":")
    if not sep or not module_name or not name:
        raise ConfigError(f"{what}: '{ref}' must be MODULE:NAME, e.g. guidedmarl_domains.mpe:SpreadModel")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import '{module_name}' ({exc})") from None
    if not hasattr(module, name):
        raise ConfigError(f"{what}: '{module_name}' has no attribute '{name}'")
    return getattr(module, name)


class PettingZooDomain(Domain):
    """A PettingZoo environment as a domain; its analytical model and heuristics are optional settings."""

    name = "pettingzoo"
    description = "any PettingZoo ParallelEnv (--domain pettingzoo:MODULE); analytical model optional (domain_config.model)"
    settings_model: ClassVar[type[BaseModel]] = PettingZooSettings

    def __init__(self, num_agents: int, settings: PettingZooSettings) -> None:  # type: ignore[override]
        super().__init__(num_agents, settings)
        self.settings: PettingZooSettings = settings
        self.factory = make_factory(settings)

    @classmethod
    def resolve_agents(cls, requested: int | None, settings: BaseModel) -> int:
        assert isinstance(settings, PettingZooSettings)
        try:
            n = len(make_factory(settings)().possible_agents)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's environment failed to build
            raise ConfigError(f"domain_config: {settings.env}(**{settings.kwargs}) failed: {type(exc).__name__}: {exc}") from None
        if requested is not None and requested != n:
            raise ConfigError(f"agents: {settings.env} with {settings.kwargs} has {n} agents; got --agents {requested} "
                              "(set the environment's own argument in domain_config.kwargs, or leave --agents out)")  # fmt: skip
        return n

    def make_model(self) -> AnalyticalModel | None:
        if self.settings.model is None:
            return None
        cls = load_object(self.settings.model, "domain_config.model")
        if not (isinstance(cls, type) and issubclass(cls, AnalyticalModel)):
            raise ConfigError(f"domain_config.model: '{self.settings.model}' is not a subclass of guidedmarl.AnalyticalModel")
        kwargs = dict(self.settings.model_kwargs)
        if cls.action_kind == "discrete":
            probe = self.factory()
            space = probe.action_space(probe.possible_agents[0])
            kwargs.setdefault("num_actions", int(getattr(space, "n", 0)))
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"domain_config.model_kwargs: {cls.__name__}({kwargs}) failed: {exc}") from None

    def heuristics(self) -> dict[str, Callable[[], HeuristicPolicy]]:
        return {name: load_object(ref, f"domain_config.heuristics.{name}") for name, ref in self.settings.heuristics.items()}

    def make_env(self, num_envs: int) -> PettingZooVecEnv:
        s = self.settings
        return PettingZooVecEnv(self.factory, num_envs, s.horizon, s.team_reward, s.auto_reset, s.truncation, s.global_state)


def domain_for(env: str) -> type[PettingZooDomain]:
    """The domain class of ``--domain pettingzoo:ENV``: :class:`PettingZooDomain` with ``env`` preset."""
    settings = create_model(f"PettingZooSettings[{env}]", __base__=PettingZooSettings,
                            env=(str, Field(env, min_length=1, description=PettingZooSettings.model_fields["env"].description)))  # fmt: skip
    return type(f"PettingZooDomain[{env}]", (PettingZooDomain,), {"settings_model": settings, "name": PREFIX + env})
