"""The numbers a PPO update is made of: GAE advantages (fixed horizon or auto-reset episodes),
weighted means over active samples, explained variance, and the finiteness check with a hint.

Kept apart from :mod:`guidedmarl.training.trainer` so that each can be read, and tested, on
its own (``tests/test_auto_reset.py`` checks GAE against an episode-by-episode computation).
"""

from __future__ import annotations

import torch
from torch import Tensor

from guidedmarl.errors import TrainingError
from guidedmarl.finite import all_finite, count_nonfinite


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    gamma: float,
    lam: float,
    dones: Tensor | None = None,
    bootstrap: Tensor | None = None,
    next_value: Tensor | None = None,
) -> Tensor:
    """Generalised advantage estimation.

    ``rewards`` is ``[T, E]`` (or ``[T, E, N]``, each agent's own); ``values`` is ``[T, E]``
    or ``[T, E, N]`` (a team reward is then broadcast to every agent).

    Fixed horizon (``dones`` None): one episode per environment that ends at T, terminal: no
    bootstrap after step T-1. Auto-reset environments: ``dones`` ``[T, E]`` marks the steps
    whose transition ended an episode; the advantage does not flow across them, and the
    one-step target there is ``r + gamma * bootstrap`` (``bootstrap``: the value of the
    ended episode's last state for a time limit, 0 for a terminal end). ``next_value`` is the
    value after step T-1 for the episodes the rollout cut (default 0).
    """
    if values.dim() == rewards.dim() + 1:
        rewards = rewards.unsqueeze(-1).expand_as(values)
    adv = torch.zeros_like(values)
    last = torch.zeros_like(values[0])
    horizon = rewards.shape[0]
    if dones is None:
        for t in reversed(range(horizon)):
            next_v = values[t + 1] if t + 1 < horizon else torch.zeros_like(values[t])
            delta = rewards[t] + gamma * next_v - values[t]
            last = delta + gamma * lam * last
            adv[t] = last
        return adv
    ended = dones.to(values.dtype)
    if ended.dim() < values.dim():
        ended = ended.unsqueeze(-1).expand_as(values)
    boot = torch.zeros_like(values) if bootstrap is None else bootstrap
    after = torch.zeros_like(values[0]) if next_value is None else next_value
    for t in reversed(range(horizon)):
        next_v = values[t + 1] if t + 1 < horizon else after
        target = torch.where(ended[t] > 0, boot[t], next_v)
        delta = rewards[t] + gamma * target - values[t]
        last = delta + gamma * lam * (1.0 - ended[t]) * last
        adv[t] = last
    return adv


def _require_finite(t: Tensor, what: str, look_at: str) -> None:
    """A :class:`TrainingError` naming ``what`` (and where to look) if ``t`` holds a NaN or an infinity."""
    if not all_finite(t):
        bad = count_nonfinite(t)
        raise TrainingError(f"{what} hold {bad} NaN or infinite value(s) of {t.numel()}; check {look_at}")


def _weighted_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """Mean of ``values`` (weight None) or their ``weight``-weighted mean; 0 for no samples."""
    if weight is None:
        return values.sum() / max(values.numel(), 1)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def explained_variance(pred: Tensor, target: Tensor) -> float:
    """1 - Var(target - pred) / Var(target): 1 is a perfect critic, <= 0 a useless one."""
    var = target.var()
    return float("nan") if var == 0 else float(1.0 - (target - pred).var() / var)
