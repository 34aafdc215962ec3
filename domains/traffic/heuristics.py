"""Route-choice rules for comparison, batched over ``[E, N]`` (lines in every plot).

* ``free_flow``: all-or-nothing on free-flow times: every packet takes its shortest free-flow route
  (route 0), what a commuter without traffic information does.
* ``user_equilibrium``: the packets of each OD pair split over its routes as the route-set user
  equilibrium does (Wardrop's first principle: what selfish, fully informed drivers reach; the
  structured solver on the Beckmann potential, :mod:`.reference`).
* ``system_optimum``: the same with the system-optimal split (the reference x_ref; the upper bound
  of a team with these route sets, up to the packets' granularity).
* ``day_to_day``: decentralised, sees the previous day's times only: the method of successive
  averages as a rule: on day t >= 1 every packet switches to the route that was fastest on day t - 1
  with probability 1 / (t + 2) (seeded), otherwise keeps its route; the day before day 0 is the free-flow
  all-or-nothing assignment (``warm_start``; without it day 0 is that assignment and the probability
  1 / (t + 1)).
* ``random``: every packet on a uniformly random route each day (seeded): the floor.

A split h (path flows) becomes packets by quantile: packet i with quantile u_i takes the first route j
whose cumulative share of its OD pair's demand exceeds u_i (a route repeated in the table counts once),
so each route gets its share of the OD pair's packets rounded to whole packets.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from guidedmarl.env import MultiAgentVecEnv, Step

from .env import TrafficEnv


def split_actions(env: TrafficEnv, path_flow: Tensor) -> Tensor:
    """Actions ``[E, N]`` that put each OD pair's packets on its routes in proportion to ``path_flow [E, P]``."""
    routes = torch.as_tensor(env.system.routes)  # [W, k]
    first = torch.ones_like(routes, dtype=torch.bool)
    first[:, 1:] = routes[:, 1:] != routes[:, :-1]  # repeated routes come last and in a row
    flow = path_flow[:, routes] * first.to(path_flow.dtype)  # [E, W, k]
    share = flow / flow.sum(-1, keepdim=True).clamp_min(1e-300)
    cumulative = share.cumsum(-1)[:, env.od]  # [E, N, k]
    below = (env.quantile.view(1, -1, 1) >= cumulative[..., :-1]).sum(-1)
    return below.clamp_max(env.spec.num_actions - 1).long()


class _Rule:
    """Base: a rule sees the :class:`TrafficEnv` (its scenario's flows and last day's times)."""

    def reset(self, env: MultiAgentVecEnv, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, env: MultiAgentVecEnv, step: Step) -> Tensor:
        if not isinstance(env, TrafficEnv):
            raise TypeError(f"traffic heuristics need a TrafficEnv, got {type(env).__name__}")
        return self.act(env)

    def act(self, env: TrafficEnv) -> Tensor:
        raise NotImplementedError


class FreeFlow(_Rule):
    def act(self, env: TrafficEnv) -> Tensor:
        return torch.zeros(env.num_envs, env.spec.num_agents, dtype=torch.long)


class UserEquilibrium(_Rule):
    def act(self, env: TrafficEnv) -> Tensor:
        return split_actions(env, env.ue_path)


class SystemOptimum(_Rule):
    def act(self, env: TrafficEnv) -> Tensor:
        return split_actions(env, env.so_path)


class DayToDay(_Rule):
    def act(self, env: TrafficEnv) -> Tensor:
        warm = env.system.settings.warm_start
        if env.t == 0 and not warm:
            return torch.zeros(env.num_envs, env.spec.num_agents, dtype=torch.long)
        fastest = env.last_times.argmin(-1)
        switch = torch.rand(env.last_action.shape, generator=self.gen) < 1.0 / (env.t + 1 + int(warm))
        return torch.where(switch, fastest, env.last_action)


class Random(_Rule):
    def act(self, env: TrafficEnv) -> Tensor:
        shape = (env.num_envs, env.spec.num_agents)
        return torch.randint(0, env.spec.num_actions, shape, generator=self.gen)


HEURISTICS: dict[str, Callable[[], _Rule]] = {
    "system_optimum": SystemOptimum,
    "user_equilibrium": UserEquilibrium,
    "day_to_day": DayToDay,
    "free_flow": FreeFlow,
    "random": Random,
}
"""Heuristics by name."""
