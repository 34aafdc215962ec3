"""Rules to compare learners against on ``simple_spread``, one step of lookahead each.

Every rule moves each agent towards a target landmark: it takes the discrete push whose
committed position (:mod:`.model`) lands nearest the target, so velocity and damping are
accounted for. The rules differ in the target:

* :class:`NearestLandmarkRule`: each agent's nearest landmark, from its own observation
  (decentralised; agents may pile onto one landmark and leave others uncovered);
* :class:`AssignmentRule`: the landmark the least-total-distance assignment gives it
  (centralised, re-solved every step: the scripted near-optimum);
* :class:`RandomRule`: uniform random moves.
"""

from __future__ import annotations

import torch
from torch import Tensor

from guidedmarl import MultiAgentVecEnv, Step
from guidedmarl_domains.mpe.model import DIRECTIONS, SpreadContext, assigned_landmarks, spread_context


def _towards(ctx: SpreadContext, target: Tensor) -> Tensor:
    """``[E, N]`` the push whose committed position is nearest ``target`` ``[E, N, 2]``."""
    options = ctx.drift.unsqueeze(2) + ctx.push[..., None, None] * DIRECTIONS.to(ctx.drift.dtype)  # [E, N, 5, 2]
    return (options - target.unsqueeze(2)).square().sum(-1).argmin(-1)


class _Rule:
    def reset(self, env: MultiAgentVecEnv, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)


class NearestLandmarkRule(_Rule):
    """Each agent heads for its nearest landmark (decentralised)."""

    def __call__(self, env: MultiAgentVecEnv, step: Step) -> Tensor:
        ctx = spread_context(env.model_context())
        nearest = torch.cdist(ctx.position, ctx.landmarks).argmin(-1)
        return _towards(ctx, ctx.landmarks.gather(1, nearest.unsqueeze(-1).expand(-1, -1, 2)))


class AssignmentRule(_Rule):
    """Each agent heads for the landmark of the least-total-distance assignment (centralised)."""

    def __call__(self, env: MultiAgentVecEnv, step: Step) -> Tensor:
        ctx = spread_context(env.model_context())
        return _towards(ctx, assigned_landmarks(ctx))


class RandomRule(_Rule):
    """Uniform random moves."""

    def __call__(self, env: MultiAgentVecEnv, step: Step) -> Tensor:
        return torch.randint(0, 5, step.active.shape, generator=self.generator)
