"""The random policy and the rollout helper of the checks: :func:`random_actions`, ``_Setup`` (what every
check is given: the environments, seeds, steps and random generators) and the check of each returned step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from guidedmarl.checks.report import CheckFailed, _blame, _shape
from guidedmarl.domain import Domain
from guidedmarl.env import MultiAgentVecEnv, Step
from guidedmarl.finite import all_finite, count_nonfinite

ActionSampler = Callable[[MultiAgentVecEnv, torch.Generator], Tensor]


def random_actions(env: MultiAgentVecEnv, gen: torch.Generator) -> Tensor:
    """The default random policy: uniform options (discrete) or 0.5 N(0, 1) per action entry (continuous)."""
    spec, e = env.spec, env.num_envs
    if spec.action_kind == "discrete":
        return torch.randint(0, spec.num_actions, (e, spec.num_agents), generator=gen)
    return 0.5 * torch.randn(e, spec.num_agents, spec.action_dim, generator=gen)


@dataclass
class _Setup:
    domain: Domain
    env: MultiAgentVecEnv
    pair: MultiAgentVecEnv  # E >= 2: copies of one scenario
    seeds: list[int]
    steps: int
    sample: ActionSampler
    seed: int
    rtol: float | None

    def __post_init__(self) -> None:
        self.rng = self.gen(3)  # draws of the per-step model checks

    def gen(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def play(self, env: MultiAgentVecEnv, seeds: list[int], steps: int, tie: bool = False) -> list[Step]:
        """reset + ``steps`` checked steps of random actions (``tie``: the same actions in every environment)."""
        name, gen = type(env).__name__, self.gen()
        with _blame(f"{name}.reset"):
            out = [env.reset(seeds)]
        _check_step(env, out[0], "reset")
        for t in range(steps):
            actions = self.sample(env, gen)
            with _blame(f"{name}.step (step {t})"):
                out.append(env.step(actions[:1].expand_as(actions).clone() if tie else actions))
            _check_step(env, out[-1], f"step (step {t})")
        return out


def _expect(t: Any, shape: tuple[int, ...], kind: str, what: str, symbol: str) -> None:
    want = f"{symbol} = {list(shape)}"
    if not isinstance(t, Tensor) or tuple(t.shape) != shape:
        raise CheckFailed(f"{what} must have shape {want}, got {_shape(t)}")
    if (kind == "bool" and t.dtype != torch.bool) or (kind == "float" and not t.is_floating_point()):
        raise CheckFailed(f"{what} must be a {kind} tensor of shape {want}, got {_shape(t)}")
    if not all_finite(t):
        raise CheckFailed(f"{what} ({_shape(t)}) has {count_nonfinite(t)} NaN or infinite value(s)")


def _check_step(env: MultiAgentVecEnv, step: Any, where: str) -> None:
    name, e, spec = f"{type(env).__name__}.{where}", env.num_envs, env.spec
    if not isinstance(step, Step):
        raise CheckFailed(f"{name} must return a guidedmarl.Step, got {type(step).__name__}")
    n = spec.num_agents
    for key, shape, kind, symbol in (("obs", (e, n, spec.obs_dim), "float", "[E, N, obs_dim]"),
                                     ("state", (e, spec.state_dim), "float", "[E, state_dim]"),
                                     ("active", (e, n), "bool", "[E, N]"), ("reward", (e,), "float", "[E]"),
                                     ("done", (e,), "bool", "[E]")):
        _expect(getattr(step, key), shape, kind, f"{name}: {key}", symbol)
    if not isinstance(step.info, dict):
        raise CheckFailed(f"{name}: info must be a dict of [E] tensors, got {type(step.info).__name__}")
    for key, value in step.info.items():
        _expect(value, (e,), "any", f"{name}: info[{key!r}]", "[E]")
