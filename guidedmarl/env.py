"""The environment contract: N cooperative agents, batched over E parallel environments.

Every tensor crossing this boundary carries the leading shape ``[E, N]`` (environments,
agents) or ``[E]`` for team quantities. All environments of one batch advance in lock step,
so a rollout is a plain ``for t in range(horizon)`` loop. Two kinds of episode end:

* **fixed horizon** (the default, every shipped domain): all environments end together after
  ``horizon`` steps; the end is terminal (no bootstrap). Nothing per environment to track.
* **auto-reset** (``EnvSpec.auto_reset``; real environments such as PettingZoo's): an episode
  may end at any step and at different steps in different environments. The step that ends
  it has ``done`` set, says whether the end is terminal (``terminated``) or a time limit,
  carries the ended episode's last observation in ``final``, and already holds the first
  observation of the environment's next episode. ``horizon`` is then the longest episode
  and the length of one rollout; the learner masks GAE at each end and bootstraps time limits.

Agents that leave an episode early are inactive (``Step.active``). PettingZoo users can wrap
one environment of the batch with :func:`guidedmarl.adapters.pettingzoo.as_parallel_env`.

Environments also expose :meth:`MultiAgentVecEnv.model_context`: the exogenous and
pre-action quantities the domain's :class:`~guidedmarl.analytical.AnalyticalModel` needs to
compute the post-action state x, the reference x_ref and the guidance weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class EnvSpec:
    """Static description of a batched multi-agent environment.

    Attributes:
        num_agents: N, agents per environment.
        obs_dim: length of one agent's observation vector.
        state_dim: length of the global state (input of a centralised MAPPO critic).
        action_kind: ``"discrete"`` (one of ``num_actions`` options) or ``"continuous"``.
        num_actions: options per agent for discrete actions.
        action_dim: action vector length per agent for continuous actions.
        horizon: steps per episode (identical for every environment of a batch); with
            ``auto_reset``, the longest an episode may last and the steps of one rollout.
        mean_field_features: width of :meth:`MultiAgentVecEnv.mean_field` when an environment
            overrides it; 0 means the default field (the others' mean one-hot or action).
        option_features: for discrete actions, F > 0 declares that an observation starts with
            ``num_actions`` blocks of F features, block j describing option j (a server, a
            route), followed by features shared by all options; learners may then score the
            options with one network (``ppo.actor = "auto"`` or ``"option_scorer"``). 0: no
            such layout.
        action_low, action_high: for continuous actions, the bounds of each of the
            ``action_dim`` components where the environment has them (a PettingZoo ``Box``);
            None: unbounded (e.g. power's actions, logits that the environment maps into each
            generator's window). Adapters expose them as the bounds of the action space.
        auto_reset: False: every episode lasts exactly ``horizon`` steps in every environment.
            True: episodes end when the environment says (``Step.done``, at most ``horizon``
            steps after they began) and the environment starts the next one itself (see the
            module docstring).
    """

    num_agents: int
    obs_dim: int
    state_dim: int
    horizon: int
    action_kind: Literal["discrete", "continuous"] = "discrete"
    num_actions: int = 0
    action_dim: int = 0
    mean_field_features: int = 0
    option_features: int = 0
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    auto_reset: bool = False

    @property
    def mean_field_dim(self) -> int:
        """Width F of one agent's mean field (see :meth:`MultiAgentVecEnv.mean_field`)."""
        if self.mean_field_features:
            return self.mean_field_features
        return self.num_actions if self.action_kind == "discrete" else self.action_dim

    def __post_init__(self) -> None:
        if self.num_agents < 1:
            raise ValueError(f"EnvSpec.num_agents must be >= 1, got {self.num_agents}")
        if self.horizon < 1:
            raise ValueError(f"EnvSpec.horizon must be >= 1, got {self.horizon}")
        if self.action_kind == "discrete" and self.num_actions < 1:
            raise ValueError("EnvSpec.num_actions must be >= 1 for discrete actions")
        if self.action_kind == "continuous" and self.action_dim < 1:
            raise ValueError("EnvSpec.action_dim must be >= 1 for continuous actions")
        for name in ("action_low", "action_high"):
            bound = getattr(self, name)
            if bound is not None and (self.action_kind != "continuous" or len(bound) != self.action_dim):
                raise ValueError(f"EnvSpec.{name} needs continuous actions and action_dim = {self.action_dim} values")
        if self.option_features < 0:
            raise ValueError(f"EnvSpec.option_features must be >= 0, got {self.option_features}")
        if self.option_features and (
            self.action_kind != "discrete" or self.num_actions * self.option_features > self.obs_dim
        ):
            raise ValueError(
                "EnvSpec.option_features needs discrete actions and num_actions * option_features <= obs_dim "
                f"(got {self.action_kind}, {self.num_actions} x {self.option_features} > {self.obs_dim}?)"
            )


@dataclass
class Step:
    """What an environment returns from ``reset`` and ``step``.

    Attributes:
        obs: ``[E, N, obs_dim]`` float32 observation of every agent.
        state: ``[E, state_dim]`` float32 global state.
        active: ``[E, N]`` bool, agents that must act now (e.g. a dispatcher with a job).
            Actions of inactive agents are ignored and excluded from the policy loss.
        reward: ``[E]`` shared team reward of the transition that led here (zero after reset).
        done: ``[E]`` bool, the transition that led here ended the environment's episode (all
            environments finish together unless ``EnvSpec.auto_reset``).
        info: per-step diagnostics, each a tensor of shape ``[E]``.
        action_mask: optional ``[E, N, num_actions]`` bool, the options each agent may choose
            now (discrete actions); the policy gives the others probability 0. Every active
            agent must have at least one.
        agent_reward: optional ``[E, N]`` reward of each agent, for environments whose agents
            are rewarded apart (a PettingZoo environment); ``reward`` stays the team reward.
            Learners whose critic asks for the agent's own reward (IPPO's ``local`` critic,
            ``reward: own``) learn from it; the others from ``reward``.
        terminated: optional ``[E]`` bool, the episodes that ended (``done``) in a terminal state;
            an end that is not terminal is a time limit (truncation), after which learners
            bootstrap with the value of ``final``. None: every end is terminal.
        final: with ``EnvSpec.auto_reset``, where some ``done`` is set: the step the ended
            episodes would have returned had the environment not reset (their last ``obs``,
            ``state`` and ``active``; rows of other environments are unspecified). Needed for
            the bootstrap of truncated episodes; None where no episode was truncated.
    """

    obs: Tensor
    state: Tensor
    active: Tensor
    reward: Tensor
    done: Tensor
    info: dict[str, Tensor] = field(default_factory=dict)
    agent_reward: Tensor | None = None
    action_mask: Tensor | None = None
    terminated: Tensor | None = None
    final: Step | None = None


class MultiAgentVecEnv(ABC):
    """E synchronous copies of an N-agent cooperative environment with a shared reward."""

    spec: EnvSpec
    num_envs: int

    @abstractmethod
    def reset(self, seeds: list[int]) -> Step:
        """Start one episode per environment; ``seeds`` (length E) fix each scenario."""

    @abstractmethod
    def step(self, actions: Tensor) -> Step:
        """Apply ``[E, N]`` actions (long for discrete, ``[E, N, action_dim]`` float otherwise)."""

    @abstractmethod
    def model_context(self) -> Any:
        """Pre-action, exogenous data the analytical model needs at the current step."""

    def mean_field(self, actions: Tensor, active: Tensor) -> Tensor:
        """The mean field of every agent, ``[E, N, F]``: what the *other* active agents chose.

        Default: the mean one-hot action (discrete) or mean action (continuous) of the other
        active agents of the same environment (zeros when no other agent acts). A domain
        whose action indices mean different things for different agents (cloud: a candidate
        index) overrides this with a field in system units and sets
        ``EnvSpec.mean_field_features``.
        """
        if self.spec.action_kind == "discrete":
            own = torch.nn.functional.one_hot(actions.long(), self.spec.num_actions).to(torch.float32)
        else:
            own = actions.to(torch.float32)
        own = own * active.unsqueeze(-1).to(own.dtype)
        total = own.sum(dim=1, keepdim=True)
        others = active.to(own.dtype).sum(dim=1, keepdim=True) - active.to(own.dtype)
        return (total - own) / others.clamp_min(1.0).unsqueeze(-1)

    def check_actions(self, actions: Any) -> Tensor:
        """``actions`` as a tensor that fits the spec, or a ``ValueError`` naming the problem.

        Tensors are checked as they are; NumPy arrays and nested lists are converted first
        (integers for discrete actions, floats for continuous ones), so that a user driving an
        environment from Python can pass either. Call it as ``actions = self.check_actions(actions)``
        at the top of ``step``.
        """
        actions = as_action_tensor(actions, self.spec.action_kind, getattr(self, "device", None))
        spec = self.spec
        expected: tuple[int, ...] = (self.num_envs, spec.num_agents)
        if spec.action_kind == "continuous":
            expected = (*expected, spec.action_dim)
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions must have shape {expected}, got {tuple(actions.shape)}")
        if spec.action_kind == "discrete":
            if actions.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"discrete actions must be integer tensors, got {actions.dtype}")
            if actions.numel() and (actions.min() < 0 or actions.max() >= spec.num_actions):
                raise ValueError(
                    f"discrete actions must lie in [0, {spec.num_actions - 1}], "
                    f"got values in [{int(actions.min())}, {int(actions.max())}]"
                )
        elif not torch.isfinite(actions).all():
            raise ValueError("continuous actions contain NaN or infinite values")
        return actions


def as_action_tensor(actions: Any, kind: str, device: torch.device | str | None = None) -> Tensor:
    """A tensor from a tensor, a NumPy array or a nested list of actions (``kind``: discrete or continuous).

    Discrete actions must be integers (a float or bool array is refused rather than rounded);
    continuous ones become float32. Tensors are returned unchanged (their dtype is checked by
    :meth:`MultiAgentVecEnv.check_actions`).
    """
    if isinstance(actions, Tensor):
        return actions
    if not isinstance(actions, (np.ndarray, list, tuple)):
        raise ValueError(f"actions must be a torch tensor, a NumPy array or a nested list, got {type(actions).__name__}")
    try:
        array = np.asarray(actions)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"actions could not be read as one array: {exc}") from None
    if kind == "discrete":
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"discrete actions must be integers, got a {type(actions).__name__} of {array.dtype}")
        return torch.as_tensor(array.astype(np.int64), device=device)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"continuous actions must be numbers, got a {type(actions).__name__} of {array.dtype}")
    return torch.as_tensor(array.astype(np.float32), device=device)
