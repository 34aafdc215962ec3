"""`rollout`: the one loop that plays policies in a batched environment.

Training, evaluation and every study play episodes through :func:`rollout`. What each of
them needs to keep from a step (observations for the update, guidance weights for the
estimator, score functions for a variance study) comes from **hooks**: named functions
called at every step with a :class:`StepView` (the pre-action observation, the chosen
actions, the policy's outputs) that return tensors to record. The loop stacks what they
return over time, times each hook, checks the environment's reward, and sums the
episode's return in float64.

The loop is a plain ``for t in range(steps)``. For fixed-horizon environments (every
shipped domain) that is all: every environment ends at the horizon. For auto-reset
environments (``EnvSpec.auto_reset``) the loop also keeps, per environment, where its
episodes end, whether each end was terminal, the last step of every truncated episode (for
the learner's bootstrap), and the return of every completed episode.

:class:`Rollout` is the trainer's view of one such episode: the :class:`Trajectory` with the
policy's, critic's and estimator's records unpacked into the tensors the PPO update reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from guidedmarl.env import MultiAgentVecEnv, Step
from guidedmarl.errors import DomainError, TrainingError
from guidedmarl.finite import all_finite, count_nonfinite


@dataclass
class Action:
    """What a policy returns for one step.

    Attributes:
        actions: ``[E, N]`` long (discrete) or ``[E, N, action_dim]`` float.
        log_prob: ``[E, N]`` log-probabilities of the actions (stochastic policies).
        mean: ``[E, N, action_dim]`` policy means (continuous policies).
    """

    actions: Tensor
    log_prob: Tensor | None = None
    mean: Tensor | None = None


@dataclass
class StepView:
    """One step as a hook sees it: before ``env.step(actions)`` is called."""

    t: int
    step: Step
    action: Action
    env: MultiAgentVecEnv
    _context: Any = None
    _has_context: bool = False

    @property
    def actions(self) -> Tensor:
        return self.action.actions

    def context(self) -> Any:
        """``env.model_context()`` before this step's actions, computed at most once."""
        if not self._has_context:
            self._context, self._has_context = self.env.model_context(), True
        return self._context


Hook = Callable[[StepView], Mapping[str, Tensor] | None]
Policy = Callable[[Step], Action | Tensor]


@dataclass
class Trajectory:
    """What :func:`rollout` returns.

    Attributes:
        records: every hook's tensors stacked over time, ``[T, ...]`` per key.
        rewards: ``[T, E]`` team rewards as the environment returned them.
        returns: ``[E]`` float64 episodic return (sum of the rewards, in step order).
        info: per-step diagnostics of the environment, a list over time of ``[E]`` tensors per key.
        seconds: time spent in each hook (and ``policy`` and ``env``), seconds.
        final: the last step returned by the environment.
        agent_rewards: ``[T, E, N]`` each agent's reward where the environment gives one
            (``Step.agent_reward``), else None.
        dones: auto-reset environments: ``[T, E]`` bool, an episode ended with transition t;
            None for fixed-horizon ones (all end at T).
        terminated: auto-reset environments: ``[T, E]`` bool, that end was terminal (the
            others are time limits).
        finals: auto-reset environments: for each t at which some episode was truncated, the
            ended episodes' last step (``Step.final``), for the bootstrap.
        episode_returns: auto-reset environments: the return of every episode that ended
            during the rollout, in the order they ended. ``returns`` is then each
            environment's *first* episode (what evaluation reports).
    """

    records: dict[str, Tensor]
    rewards: Tensor
    returns: Tensor
    info: dict[str, list[Tensor]]
    seconds: dict[str, float] = field(default_factory=dict)
    final: Step | None = None
    agent_rewards: Tensor | None = None
    dones: Tensor | None = None
    terminated: Tensor | None = None
    finals: dict[int, Step] = field(default_factory=dict)
    episode_returns: list[float] = field(default_factory=list)

    def info_means(self) -> dict[str, float]:
        """Each diagnostic averaged over environments, then over steps (float64)."""
        out: dict[str, float] = {}
        for key, values in self.info.items():
            total = values[0].to(torch.float64)
            for v in values[1:]:
                total = total + v.to(torch.float64)
            out[key] = float(total.mean()) / len(values)
        return out


def _described(t: Any) -> str:
    """``float32 [2, 6]`` for a tensor, else the type's name."""
    return f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}" if isinstance(t, Tensor) else type(t).__name__


def _check_tensor(t: Any, shape: tuple[int, ...], kind: str | None, what: str, symbol: str) -> None:
    """``t`` is a tensor of ``shape`` (and ``kind`` "float" or "bool"; floats finite), else a DomainError."""
    want = f"{symbol} = {list(shape)}"
    if not isinstance(t, Tensor) or tuple(t.shape) != shape:
        raise DomainError(f"{what} must have shape {want}, got {_described(t)}")
    if (kind == "bool" and t.dtype != torch.bool) or (kind == "float" and not t.is_floating_point()):
        raise DomainError(f"{what} must be a {kind} tensor of shape {want}, got {_described(t)}")
    if kind == "float" and not all_finite(t):
        raise DomainError(f"{what} ({_described(t)}) has {count_nonfinite(t)} NaN or infinite value(s)")


def _check_step(env: MultiAgentVecEnv, step: Step, where: str) -> None:
    """The step's tensors have the shapes and dtypes of the contract; obs and state are finite."""
    e, spec = env.num_envs, env.spec
    n, name = spec.num_agents, f"{type(env).__name__}.{where}"
    if not isinstance(step, Step):
        raise DomainError(f"{name} must return a guidedmarl.Step, got {type(step).__name__}")
    _check_tensor(step.obs, (e, n, spec.obs_dim), "float", f"{name}: obs", "[E, N, obs_dim]")
    _check_tensor(step.state, (e, spec.state_dim), "float", f"{name}: state", "[E, state_dim]")
    _check_tensor(step.active, (e, n), "bool", f"{name}: active", "[E, N]")
    _check_tensor(step.reward, (e,), None, f"{name}: reward", "[E]")
    _check_tensor(step.done, (e,), "bool", f"{name}: done", "[E]")
    if not isinstance(step.info, dict):
        raise DomainError(f"{name}: info must be a dict of [E] tensors, got {type(step.info).__name__}")
    for key, value in step.info.items():
        _check_tensor(value, (e,), None, f"{name}: info[{key!r}]", "[E]")
    if step.agent_reward is not None:
        _check_tensor(step.agent_reward, (e, n), "float", f"{name}: agent_reward", "[E, N]")
    if step.action_mask is not None:
        _check_tensor(step.action_mask, (e, n, spec.num_actions), "bool", f"{name}: action_mask", "[E, N, num_actions]")
        stuck = step.active & ~step.action_mask.any(-1)
        if bool(stuck.any()):
            raise DomainError(f"{name}: action_mask allows no option for {int(stuck.sum())} active agent(s)")
    if step.terminated is not None:
        _check_tensor(step.terminated, (e,), "bool", f"{name}: terminated", "[E]")
        if bool((step.terminated & ~step.done).any()):
            raise DomainError(f"{name}: terminated is set for an environment whose done is False")


class _EpisodeBook:
    """Where the episodes of auto-reset environments end, and what they returned."""

    def __init__(self, env: MultiAgentVecEnv, device: torch.device) -> None:
        self.env, e = env, env.num_envs
        self.running = torch.zeros(e, dtype=torch.float64, device=device)
        self.first = torch.zeros(e, dtype=torch.float64, device=device)
        self.ended = torch.zeros(e, dtype=torch.bool, device=device)
        self.dones: list[Tensor] = []
        self.terminated: list[Tensor] = []
        self.finals: dict[int, Step] = {}
        self.episode_returns: list[float] = []

    def add(self, t: int, step: Step) -> None:
        self.running += step.reward.to(torch.float64)
        done = step.done
        terminal = done if step.terminated is None else step.terminated
        self.dones.append(done)
        self.terminated.append(terminal)
        if not bool(done.any()):
            return
        self.episode_returns.extend(self.running[done].tolist())
        new = done & ~self.ended
        self.first = torch.where(new, self.running, self.first)
        self.ended |= done
        self.running = torch.where(done, torch.zeros_like(self.running), self.running)
        if bool((done & ~terminal).any()):
            name = type(self.env).__name__
            if step.final is None:
                raise DomainError(f"{name}.step truncated an episode (done and not terminated) at step {t} "
                                  "but gave no Step.final: the learner needs the ended episode's last step")  # fmt: skip
            spec, e = self.env.spec, self.env.num_envs
            _check_tensor(step.final.obs, (e, spec.num_agents, spec.obs_dim), "float", f"{name}.step: final.obs", "[E, N, obs_dim]")
            _check_tensor(step.final.state, (e, spec.state_dim), "float", f"{name}.step: final.state", "[E, state_dim]")
            _check_tensor(step.final.active, (e, spec.num_agents), "bool", f"{name}.step: final.active", "[E, N]")
            self.finals[t] = step.final

    def returns(self) -> Tensor:
        """Each environment's first episode return (the running one where none ended)."""
        return torch.where(self.ended, self.first, self.running)


def rollout(
    env: MultiAgentVecEnv,
    policy: Policy,
    seeds: list[int],
    hooks: Mapping[str, Hook] | None = None,
    steps: int | None = None,
) -> Trajectory:
    """Play ``steps`` steps (default: the horizon) from one reset per seed.

    Fixed-horizon environments play one episode each; auto-reset ones play as many as end
    within the steps (see :class:`Trajectory`).

    Args:
        env: the environments (``len(seeds)`` must equal ``env.num_envs``).
        policy: maps a step to an :class:`Action` (or a bare action tensor).
        seeds: one scenario seed per environment.
        hooks: named functions called at every step before ``env.step``; their returned
            tensors are recorded under their own keys (keys must not clash).
        steps: how many steps (at most the horizon).
    """
    if len(seeds) != env.num_envs:
        raise ValueError(f"{len(seeds)} seeds for a batch of {env.num_envs} environments")
    horizon = env.spec.horizon if steps is None else min(steps, env.spec.horizon)
    hooks = dict(hooks or {})
    seconds = {name: 0.0 for name in ("policy", "env", *hooks)}
    buffers: dict[str, list[Tensor]] = {}
    rewards: list[Tensor] = []
    agent_rewards: list[Tensor] = []
    info: dict[str, list[Tensor]] = {}
    step = env.reset(seeds)
    _check_step(env, step, "reset")
    returns = torch.zeros(env.num_envs, dtype=torch.float64, device=step.reward.device)
    book = _EpisodeBook(env, step.reward.device) if env.spec.auto_reset else None
    for t in range(horizon):
        t0 = time.perf_counter()
        out = policy(step)
        action = out if isinstance(out, Action) else Action(out)
        seconds["policy"] += time.perf_counter() - t0
        view = StepView(t, step, action, env)
        for name, hook in hooks.items():
            t0 = time.perf_counter()
            recorded = hook(view)
            seconds[name] += time.perf_counter() - t0
            for key, value in (recorded or {}).items():
                buffers.setdefault(key, []).append(value)
        t0 = time.perf_counter()
        step = env.step(action.actions)
        seconds["env"] += time.perf_counter() - t0
        _check_step(env, step, "step")
        if not all_finite(step.reward):
            raise TrainingError(
                f"{type(env).__name__}.step returned a NaN or infinite reward at step {t} "
                f"(environments {torch.nonzero(~torch.isfinite(step.reward)).flatten().tolist()[:8]})"
            )
        rewards.append(step.reward)
        if step.agent_reward is not None:
            agent_rewards.append(step.agent_reward)
        if book is None:
            returns += step.reward.to(torch.float64)
        else:
            book.add(t, step)
        for key, value in step.info.items():
            info.setdefault(key, []).append(value)
    records = {key: torch.stack(values) for key, values in buffers.items()}
    per_agent = torch.stack(agent_rewards) if len(agent_rewards) == len(rewards) and agent_rewards else None
    if book is None:
        return Trajectory(records, torch.stack(rewards), returns, info, seconds, step, per_agent)
    return Trajectory(records, torch.stack(rewards), book.returns(), info, seconds, step, per_agent,
                      torch.stack(book.dones), torch.stack(book.terminated), book.finals, book.episode_returns)  # fmt: skip


@dataclass
class Rollout:
    """One episode of every parallel environment as the PPO update reads it; leading dims ``[T, E]``
    (built by :meth:`guidedmarl.training.trainer.Trainer.collect`)."""

    obs: Tensor  # [T, E, N, obs_dim]
    state: Tensor  # [T, E, state_dim]
    active: Tensor  # [T, E, N] bool
    actions: Tensor  # [T, E, N] or [T, E, N, action_dim]
    log_probs: Tensor  # [T, E, N]
    values: Tensor  # [T, E] (central critic) or [T, E, N] (per-agent), in reward units
    rewards: Tensor  # [T, E]
    critic_inputs: dict[str, Tensor]  # the critic's extra inputs, [T, E, ...] each
    estimator_records: dict[str, Tensor]  # what the estimator stored, [T, E, N] each
    info: dict[str, float]
    seconds: dict[str, float]
    agent_rewards: Tensor | None = None  # [T, E, N] where the environment rewards agents apart
    action_mask: Tensor | None = None  # [T, E, N, A] allowed options, where the environment gives them
    dones: Tensor | None = None  # [T, E] auto-reset environments: an episode ended with step t
    bootstrap: Tensor | None = None  # like values: value of the ended episode's last state at truncations, else 0
    next_value: Tensor | None = None  # like values[0]: value after the last step (an episode cut by the rollout)

    @property
    def guidance(self) -> Tensor | None:
        """The guidance weights g ``[T, E, N]`` when the estimator recorded them."""
        return self.estimator_records.get("guidance")
