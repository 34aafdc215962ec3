"""Dispatch rules for comparison, batched over [E, G].

Each rule picks target outputs p* inside the current window [lo, hi] and returns the action
that the environment maps to it, a = logit((p* - lo) / (hi - lo)), with the fraction kept in
[``EDGE``, 1 - ``EDGE``] so that the action is finite (p lands within EDGE (hi - lo) of p*).

* ``merit_order``: equal incremental cost, network ignored: min sum_i q_i p_i^2 + l_i p_i
  s.t. sum_i p_i = D_t, lo <= p <= hi (exact water filling; q floored at a negligible
  value for linear costs, which then fill in order of l_i, cheapest first).
* ``proportional``: every unit at the same fraction theta of its window,
  p_i = lo_i + theta (hi_i - lo_i), theta = clip((D_t - sum lo) / (sum hi - sum lo), 0, 1):
  proportional to the capacity available this period, network ignored.
* ``random``: every unit at an independent uniform fraction of its window (seeded): the
  floor of the comparison, a dispatch that ignores demand, cost and network.
* ``reference``: the reference dispatch (DC-OPF over the day, with the network and the
  ramps); the upper bound of the comparison.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from guidedmarl.env import MultiAgentVecEnv, Step

from .env import PowerEnv
from .system import economic_dispatch

EDGE = 1e-6


def action_for(target: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """The action ``[E, G, 1]`` (float32) whose output is ``target`` ``[E, G]`` (clamped to the window)."""
    frac = ((target - lo) / (hi - lo)).clamp(EDGE, 1 - EDGE)
    return torch.logit(frac).unsqueeze(-1).float()


class _Rule:
    """Base: ``reset`` does nothing; ``__call__`` maps the env's window to actions."""

    def reset(self, env: MultiAgentVecEnv, seed: int) -> None:
        pass

    def __call__(self, env: MultiAgentVecEnv, step: Step) -> Tensor:
        if not isinstance(env, PowerEnv):
            raise TypeError(f"power heuristics need a PowerEnv, got {type(env).__name__}")
        lo, hi = env.window()
        return action_for(self.target(env, lo, hi), lo, hi)

    def target(self, env: PowerEnv, lo: Tensor, hi: Tensor) -> Tensor:
        raise NotImplementedError


class MeritOrder(_Rule):
    """Equal incremental cost within the windows, network ignored."""

    def target(self, env: PowerEnv, lo: Tensor, hi: Tensor) -> Tensor:
        q = torch.as_tensor(env.system.quadratic, dtype=lo.dtype)
        return economic_dispatch(q, env.c["cost_l"], env.current_demand(), lo, hi)


class Proportional(_Rule):
    """Same fraction of every unit's available window."""

    def target(self, env: PowerEnv, lo: Tensor, hi: Tensor) -> Tensor:
        lo_sum, hi_sum = lo.sum(-1, keepdim=True), hi.sum(-1, keepdim=True)
        theta = ((env.current_demand().unsqueeze(-1) - lo_sum) / (hi_sum - lo_sum)).clamp(0, 1)
        return lo + theta * (hi - lo)


class Random(_Rule):
    """Uniform fraction of every unit's window, independently per unit and period."""

    def __init__(self) -> None:
        self.gen = torch.Generator().manual_seed(0)

    def reset(self, env: MultiAgentVecEnv, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def target(self, env: PowerEnv, lo: Tensor, hi: Tensor) -> Tensor:
        u = torch.rand(lo.shape, generator=self.gen, dtype=lo.dtype)
        return lo + u * (hi - lo)


class Reference(_Rule):
    """The reference dispatch of the period (upper bound)."""

    def target(self, env: PowerEnv, lo: Tensor, hi: Tensor) -> Tensor:
        return env.reference_output()


HEURISTICS: dict[str, Callable[[], _Rule]] = {
    "reference": Reference,
    "merit_order": MeritOrder,
    "proportional": Proportional,
    "random": Random,
}
"""Heuristics by name."""
