"""The measurement of the variance study at one N: rollouts, per-sample weights, per-agent gradients,
their within-scenario moments and the bootstrap over rollouts (see :mod:`guidedmarl.studies.variance`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from guidedmarl.env import MultiAgentVecEnv, Step
from guidedmarl.errors import ConfigError
from guidedmarl.guidance.estimator import GuidedEstimator
from guidedmarl.guidance.weights import guidance_weights
from guidedmarl.training.networks import Actor
from guidedmarl.training.rollout import Action, StepView, rollout
from guidedmarl.training.trainer import Trainer


@dataclass
class Batch:
    """One batch of R rollouts of T steps at one N."""

    scores: Tensor  # [T, R, N, K]: score of the own action in output space
    active: Tensor  # [T, R, N] bool
    guidance: Tensor  # [T, R, N] raw g (0 where inactive)
    rewards: Tensor  # [T, R] float64, as the environment returns them


def score(actor: Actor, dist: torch.distributions.Distribution, actions: Tensor) -> Tensor:
    """d log pi(a) / d(network output): onehot - probs (logits) or (a - mu) / sigma^2 (mean)."""
    if actor.discrete:
        probs = dist.probs  # type: ignore[attr-defined]
        return torch.nn.functional.one_hot(actions.long(), probs.shape[-1]).to(probs.dtype) - probs
    return (actions - dist.mean) / dist.variance


class SamplingPolicy:
    """Samples the actor's actions and keeps the step's distribution for the score hook."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.dist: torch.distributions.Distribution | None = None

    def __call__(self, step: Step) -> Action:
        self.dist = self.actor.distribution(step.obs)
        actions = self.dist.sample()
        return Action(actions, mean=None if self.actor.discrete else self.dist.mean)


@torch.no_grad()
def collect(trainer: Trainer, env: MultiAgentVecEnv, seeds: list[int], steps: int) -> Batch:
    """Play one episode of ``steps`` steps per seed with the trainer's actor; scores, g and rewards.

    g is the trainer's own guidance weight (its estimator's model, weight kind, and the
    policy mean for continuous actions), so the study measures the weight training uses.
    """
    estimator = trainer.estimator
    if not isinstance(estimator, GuidedEstimator):
        raise ConfigError(f"the variance study needs a guided estimator (dgpg), got '{estimator.kind}'")
    model, exact = estimator.model, estimator.exact_difference
    assert model is not None
    policy = SamplingPolicy(trainer.actor)

    def record(view: StepView) -> dict[str, Tensor]:
        g = guidance_weights(model, view.actions, view.context(), exact, mean_action=view.action.mean)
        if g.shape != view.step.active.shape:
            raise ConfigError(
                f"guidance weights of shape {tuple(g.shape)} (one per action dimension) are not supported: "
                "the study, like the trainer, needs one scalar g per agent"
            )
        assert policy.dist is not None
        active = view.step.active.clone()
        return {"score": score(trainer.actor, policy.dist, view.actions), "active": active, "guidance": g * active}

    traj = rollout(env, policy, seeds, {"variance": record}, steps)
    rec = traj.records
    return Batch(rec["score"], rec["active"], rec["guidance"], traj.rewards.to(torch.float64))


def weights(batch: Batch, groups: int, gamma: float, reward_scale: float, estimator: GuidedEstimator) -> dict[str, Tensor]:
    """Per-sample weights ``[T, R, N]`` of the three estimators (float64)."""
    rewards = batch.rewards * reward_scale
    steps, r = rewards.shape
    rtg = torch.zeros_like(rewards)
    running = torch.zeros(r, dtype=torch.float64)
    for t in reversed(range(steps)):
        running = rewards[t] + gamma * running
        rtg[t] = running
    reps = r // groups
    grouped = rtg.reshape(steps, groups, reps)
    loo = (grouped.sum(-1, keepdim=True) - grouped) / (reps - 1)  # mean of the other replicas
    shared = (grouped - loo).reshape(steps, r)  # [T, R]

    mask = batch.active
    n = mask.shape[-1]
    maskf = mask.to(torch.float64)
    g = batch.guidance.to(torch.float64)
    g_mean = (g * maskf).sum() / maskf.sum().clamp_min(1.0)
    shared_agents = shared.unsqueeze(-1).expand(steps, r, n)
    mixed = estimator.advantage(shared_agents, {"guidance": g}, mask, progress=0.0)
    return {"shared": shared_agents * maskf, "guidance": (g - g_mean) * maskf, "dgpg": mixed * maskf}


def gradients(batch: Batch, weight: Tensor) -> Tensor:
    """``grad_i = sum_t s_{i,t} w_{i,t}`` per rollout: ``[R, N, K]`` float64."""
    grads = torch.zeros(*batch.scores.shape[1:], dtype=torch.float64)
    for t in range(batch.scores.shape[0]):
        grads += batch.scores[t].to(torch.float64) * weight[t].unsqueeze(-1)
    return grads


@dataclass
class Moments:
    """Agent-averaged moments of one estimator at one N."""

    variance: float
    se_agents: float
    signal: float
    relative: float


def agent_moments(grads: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Per-agent trace of the within-group covariance and debiased squared mean norm.

    ``grads``: ``[R, N, K]`` float64, rollouts ordered group-major.
    """
    r = grads.shape[0]
    g = grads.reshape(groups, r // groups, *grads.shape[1:])
    var = g.var(dim=1, unbiased=True).sum(-1).mean(0)  # [N]
    signal = grads.mean(0).square().sum(-1) - var / r  # [N]
    return var, signal


def summary(var: Tensor, signal: Tensor) -> Moments:
    """Mean over agents; the relative variance is NaN when the debiased signal is not positive."""
    n = var.numel()
    v, s = float(var.mean()), float(signal.mean())
    se_agents = float(var.std()) / math.sqrt(n) if n > 1 else float("nan")
    return Moments(v, se_agents, s, v / s if s > 0 else float("nan"))


def bootstrap(grads: Tensor, groups: int, resamples: int, gen: torch.Generator) -> tuple[Any, Any, Any]:
    """Mean variance, relative variance and signal on ``resamples`` rollout resamples (within groups)."""
    r = grads.shape[0]
    reps = r // groups
    offsets = (torch.arange(groups) * reps).unsqueeze(1)
    variances, relatives, signals = np.empty(resamples), np.empty(resamples), np.empty(resamples)
    for b in range(resamples):
        idx = (torch.randint(reps, (groups, reps), generator=gen) + offsets).reshape(-1)
        var, signal = agent_moments(grads[idx], groups)
        # a resample's mean scatters around the sample mean by Var / R, so its debiased
        # signal is centred on ||mean||^2, i.e. Var / R above the estimate: subtract it once
        # more (bootstrap bias correction), so that the replicates centre on the estimate
        st = summary(var, signal - var / r)
        variances[b], relatives[b], signals[b] = st.variance, st.relative, st.signal
    return variances, relatives, signals
