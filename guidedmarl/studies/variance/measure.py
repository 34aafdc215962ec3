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
from guidedmarl.errors import ConfigError, GuidanceError
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
    first_order: Tensor | None = None  # [T, R, N] the first-order weight, when both kinds are measured
    exact_difference: Tensor | None = None  # [T, R, N] the exact-difference weight, likewise


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
def collect(trainer: Trainer, env: MultiAgentVecEnv, seeds: list[int], steps: int, both_kinds: bool = False) -> Batch:
    """Play one episode of ``steps`` steps per seed with the trainer's actor; scores, g and rewards.

    g is the trainer's own guidance weight (its estimator's model, weight kind, and the
    policy mean for continuous actions), so the study measures the weight training uses.
    With ``both_kinds`` the weight of the other kind (first order or exact difference) is
    computed on the same samples too, for :func:`first_order_bias`.
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
        out = {"score": score(trainer.actor, policy.dist, view.actions), "active": active, "guidance": g * active}
        if both_kinds:
            try:
                other = guidance_weights(model, view.actions, view.context(), not exact, mean_action=view.action.mean)
            except GuidanceError as err:
                kind = "first-order" if exact else "exact-difference"
                raise ConfigError(
                    f"the first-order bias needs the {kind} weight too, and {type(model).__name__} cannot give it: "
                    f"{err}. Run the study with --no-first-order-bias (first_order_bias: false)"
                ) from None
            out["other"] = other * active
        return out

    traj = rollout(env, policy, seeds, {"variance": record}, steps)
    rec = traj.records
    batch = Batch(rec["score"], rec["active"], rec["guidance"], traj.rewards.to(torch.float64))
    if both_kinds:
        pair = (rec["other"], rec["guidance"]) if exact else (rec["guidance"], rec["other"])
        batch.first_order, batch.exact_difference = pair
    return batch


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


def resample_rollouts(rollouts: int, groups: int, gen: torch.Generator) -> Tensor:
    """Indices of one bootstrap resample: the replicas of each group drawn with replacement within it."""
    reps = rollouts // groups
    offsets = (torch.arange(groups) * reps).unsqueeze(1)
    return (torch.randint(reps, (groups, reps), generator=gen) + offsets).reshape(-1)


def bootstrap(grads: Tensor, groups: int, resamples: int, gen: torch.Generator) -> tuple[Any, Any, Any]:
    """Mean variance, relative variance and signal on ``resamples`` rollout resamples (within groups)."""
    r = grads.shape[0]
    variances, relatives, signals = np.empty(resamples), np.empty(resamples), np.empty(resamples)
    for b in range(resamples):
        idx = resample_rollouts(r, groups, gen)
        var, signal = agent_moments(grads[idx], groups)
        # a resample's mean scatters around the sample mean by Var / R, so its debiased
        # signal is centred on ||mean||^2, i.e. Var / R above the estimate: subtract it once
        # more (bootstrap bias correction), so that the replicates centre on the estimate
        st = summary(var, signal - var / r)
        variances[b], relatives[b], signals[b] = st.variance, st.relative, st.signal
    return variances, relatives, signals


def debiased_inner(u: Tensor, v: Tensor, groups: int) -> tuple[float, float]:
    """(<mean u, mean v>, its bias): summed over agents and outputs, ``u``, ``v`` ``[R, N, K]`` group-major.

    The bias is the within-group covariance of u and v over the R rollouts (averaged over
    groups) divided by R, so ``inner - bias`` estimates <E u, E v> without the noise term
    (for u = v: ``||mean||^2 - Var / R``, as :func:`agent_moments`).
    """
    r = u.shape[0]
    ug, vg = u.reshape(groups, r // groups, -1), v.reshape(groups, r // groups, -1)
    cov = ((ug - ug.mean(1, keepdim=True)) * (vg - vg.mean(1, keepdim=True))).sum(1) / (r // groups - 1)
    return float((u.mean(0) * v.mean(0)).sum()), float(cov.mean(0).sum()) / r


def _centred(weight: Tensor, mask: Tensor) -> Tensor:
    maskf = mask.to(torch.float64)
    w = weight.to(torch.float64)
    return (w - (w * maskf).sum() / maskf.sum().clamp_min(1.0)) * maskf


def _bias_figures(grads: dict[str, Tensor], groups: int, extra_bias: bool) -> tuple[float, float]:
    """(||E b|| / ||E d||, cos(E f, E d)) from debiased inner products; NaN where a norm is not resolved.

    ``extra_bias`` subtracts the noise term once more (a bootstrap resample's mean scatters
    around the sample mean by it, see :func:`bootstrap`)."""

    def inner(a: str, b: str) -> float:
        raw, noise = debiased_inner(grads[a], grads[b], groups)
        return raw - noise * (2 if extra_bias else 1)

    bb, dd, ff, fd = inner("b", "b"), inner("d", "d"), inner("f", "f"), inner("f", "d")
    relative = math.sqrt(max(bb, 0.0) / dd) if dd > 0 else float("nan")
    cosine = fd / math.sqrt(ff * dd) if ff > 0 and dd > 0 else float("nan")
    return relative, cosine


def first_order_bias(batch: Batch, groups: int, resamples: int, gen: torch.Generator) -> dict[str, float]:
    """How far the paper's first-order weight g_i is from the exact difference D_i, in gradient terms.

    With per-rollout logit-space gradients f = sum_t s g, d = sum_t s D and b = f - d (each
    weight centred over the batch's active samples, as the ``guidance`` estimator is),
    ``relative`` is ||E b|| / ||E d||: the size of the first-order weight's bias (E[s (g - D)],
    grad E[1/2 ||z_i||^2] for the quadratic potential) against the gradient of the potential
    that the exact difference estimates without bias (norms over every agent's logits, noise
    removed as in :func:`debiased_inner`; 0 when the bias is below the noise). ``cosine`` is
    cos(E f, E d): 1 when the bias does not turn the direction. ``relative_low`` /
    ``relative_high``: bootstrap 95 % percentile interval over rollouts (replicas resampled
    within groups).
    """
    if batch.first_order is None or batch.exact_difference is None:
        raise ValueError("first_order_bias needs a batch collected with both_kinds=True")
    f, d = _centred(batch.first_order, batch.active), _centred(batch.exact_difference, batch.active)
    grads = {"f": gradients(batch, f), "d": gradients(batch, d), "b": gradients(batch, f - d)}
    relative, cosine = _bias_figures(grads, groups, extra_bias=False)
    boot = []
    for _ in range(resamples):
        idx = resample_rollouts(grads["f"].shape[0], groups, gen)
        boot.append(_bias_figures({k: v[idx] for k, v in grads.items()}, groups, extra_bias=True)[0])
    finite = np.asarray([x for x in boot if math.isfinite(x)])
    low, high = np.percentile(finite, [2.5, 97.5]) if finite.size else (float("nan"), float("nan"))
    return {"relative": relative, "relative_low": float(low), "relative_high": float(high), "cosine": cosine}
