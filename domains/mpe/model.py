"""`SpreadModel`: the particles' motion in ``simple_spread`` as an analytical model.

MPE integrates each step as: position += velocity * dt, then velocity = (1 - damping) *
velocity + (force / mass) * dt, with the force of a discrete action a equal to
``accel * direction(a)`` (``accel`` 5 by default; direction: 0 none, 1 -x, 2 +x, 3 -y,
4 +y) plus contact forces between particles. The position right after a step therefore does
not depend on that step's action (it moves first); the action shows one step later. The
model's state is that **committed position**, where each agent will be after the next step
if nothing else pushes it::

    x_i = p_i + dt v_i + dt ((1 - damping) v_i + dt accel direction(a_i) / mass_i)    (world units)

It is affine in the one-hot action, and agent i moves only its own two components, by
``dz_i = dt^2 accel direction(a_i) / mass_i`` (0.05 world units for a full push): the
closed-form influence has K = 2 entries per agent. Contact forces are left out of the
model (they act only when particles overlap).

The reference x_ref puts each agent on a landmark, the landmarks assigned to the agents by
the assignment of least total distance from the pre-step positions (Hungarian method,
``scipy.optimize.linear_sum_assignment``). The reward is minus the sum over landmarks of
the distance to the nearest agent (half-weighted, plus collision penalties), which is
smallest when the agents sit on distinct landmarks: x_ref is that configuration.

Exogeneity. The paper's guidance assumes that x_ref does not depend on the agents' actions.
Here x_ref depends on the state (the pre-step positions pick the assignment), and the state
depends on earlier actions. Within a step the reference is fixed (it is computed before the
actions and under ``torch.no_grad``), so the guidance weight is the exact descent direction
of the step's potential; across steps the assignment can switch when agents cross, which
the theory does not cover. docs/theory.md discusses it; docs/results.md measures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from guidedmarl import AnalyticalModel, SparseInfluence
from guidedmarl.errors import DomainError

DIRECTIONS = torch.tensor([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
"""Unit push of each discrete action of MPE (no-op, -x, +x, -y, +y)."""


@dataclass
class SpreadContext:
    """The pre-step physical state of E ``simple_spread`` worlds, batched (world units).

    Attributes:
        position, velocity: ``[E, N, 2]`` of the agents.
        landmarks: ``[E, L, 2]`` landmark positions.
        push: ``[E, N]`` dt^2 accel / mass of each agent: how far a full push moves it.
        drift: ``[E, N, 2]`` where each agent is committed to with no push.
    """

    position: Tensor
    velocity: Tensor
    landmarks: Tensor
    push: Tensor
    drift: Tensor


def _world(env: Any) -> Any:
    world = getattr(getattr(env, "unwrapped", env), "world", None)
    if world is None or not hasattr(world, "landmarks"):
        raise DomainError(f"SpreadModel needs an MPE environment with a world of agents and landmarks, got {type(env).__name__}")
    return world


def spread_context(context: Any) -> SpreadContext:
    """The batched physical state from the PettingZoo adapter's context (cached on it per step)."""
    cache = getattr(context, "cache", None)
    if cache is not None and "spread" in cache:
        return cache["spread"]
    envs = getattr(context, "envs", None)
    if envs is None:
        raise DomainError("SpreadModel expects the context of guidedmarl's PettingZoo adapter (with .envs)")
    pos, vel, marks, push = [], [], [], []
    for env in envs:
        world = _world(env)
        pos.append(np.stack([a.state.p_pos for a in world.agents]))
        vel.append(np.stack([a.state.p_vel for a in world.agents]))
        marks.append(np.stack([lm.state.p_pos for lm in world.landmarks]))
        accel = np.array([5.0 if a.accel is None else a.accel for a in world.agents])
        push.append(world.dt**2 * accel / np.array([a.mass for a in world.agents]))
    world = _world(envs[0])
    dtype = torch.get_default_dtype()
    position, velocity = torch.as_tensor(np.stack(pos), dtype=dtype), torch.as_tensor(np.stack(vel), dtype=dtype)
    drift = position + world.dt * velocity + world.dt * (1.0 - world.damping) * velocity
    out = SpreadContext(position, velocity, torch.as_tensor(np.stack(marks), dtype=dtype),
                        torch.as_tensor(np.stack(push), dtype=dtype), drift)  # fmt: skip
    if cache is not None:
        cache["spread"] = out
    return out


def assigned_landmarks(ctx: SpreadContext) -> Tensor:
    """``[E, N, 2]``: the landmark each agent gets under the least-total-distance assignment."""
    dist = torch.cdist(ctx.position, ctx.landmarks).numpy()
    rows = []
    for e in range(dist.shape[0]):  # one small assignment problem per environment (N x L)
        agents, marks = linear_sum_assignment(dist[e])
        order = np.empty(dist.shape[1], dtype=np.int64)
        order[agents] = marks
        rows.append(order)
    index = torch.as_tensor(np.stack(rows))
    return ctx.landmarks.gather(1, index.unsqueeze(-1).expand(-1, -1, 2))


class SpreadModel(AnalyticalModel):
    """Committed agent positions x (``[E, 2N]``) and their assigned landmarks x_ref (see the module docstring)."""

    action_kind: ClassVar[str] = "discrete"
    closed_form_influence: ClassVar[bool] = True
    reference_follows_state: ClassVar[bool] = True  # the assignment is solved from the pre-step positions

    def __init__(self, num_actions: int = 5) -> None:
        if num_actions != 5:
            raise DomainError(f"SpreadModel models MPE's 5 discrete moves, got num_actions = {num_actions} "
                              "(continuous_actions=True is not modelled)")  # fmt: skip
        super().__init__(num_actions)

    def system_state(self, actions: Tensor, context: Any) -> Tensor:
        ctx = spread_context(context)
        moves = actions @ DIRECTIONS.to(actions.dtype)  # [E, N, 2]: the chosen unit push
        x = ctx.drift.to(actions.dtype) + ctx.push.to(actions.dtype).unsqueeze(-1) * moves
        return x.reshape(x.shape[0], -1)

    def reference_state(self, context: Any) -> Tensor:
        target = assigned_landmarks(spread_context(context))
        return target.reshape(target.shape[0], -1)

    def influence(self, actions: Tensor, context: Any) -> SparseInfluence:
        ctx = spread_context(context)
        e, n = actions.shape
        index = (2 * torch.arange(n).unsqueeze(-1) + torch.arange(2)).expand(e, n, 2)
        value = ctx.push.unsqueeze(-1) * DIRECTIONS.to(ctx.push.dtype)[actions.long()]
        return SparseInfluence(index=index, value=value)
