"""`PPOLoss`: the clipped PPO loss of one minibatch and its backward pass, whole or in chunks.

The trainer's update (:meth:`~guidedmarl.training.trainer.Trainer.update`) shuffles a rollout
into minibatches of (time, environment) rows and calls :meth:`PPOLoss._minibatch_backward` on a
minibatch that fits one pass, :meth:`PPOLoss._chunked_backward` on a larger one; either
accumulates the gradients of

    loss = policy loss - entropy_coef * entropy + value_coef * value loss

into the actor's and critic's parameters and returns the loss's parts for the metrics
(CleanRL's names: ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``, ``clipfrac``).
It is a base class of :class:`~guidedmarl.training.trainer.Trainer`, which gives it ``actor``,
``critic`` and ``ppo``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from guidedmarl.errors import TrainingError
from guidedmarl.training.advantages import _weighted_mean
from guidedmarl.training.critics import Critic
from guidedmarl.training.networks import Actor

if TYPE_CHECKING:
    from guidedmarl.config import PPOConfig


class PPOLoss:
    """The PPO loss and its backward pass over one minibatch (module docstring)."""

    actor: Actor
    critic: Critic
    ppo: PPOConfig

    def _policy_samples(self, mb: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """(obs, actions, old log-probs, advantages, weights) of a minibatch's policy loss.

        With shared weights only the active samples are gathered (``[S, ...]``, weight None):
        inactive agents contribute nothing to the loss, and on cloud about 45 % of the
        samples are inactive, so the actor's forward and backward shrink by as much. Per-agent
        weights need the agent axis, so they keep ``[rows, N, ...]`` with the active mask as
        weight. Both give the same loss up to float summation order.
        """
        active = mb["active"]
        if self.ppo.shared_parameters:
            return mb["obs"][active], mb["actions"][active], mb["logp"][active], mb["adv"][active], None
        return mb["obs"], mb["actions"], mb["logp"], mb["adv"], active.to(mb["adv"].dtype)

    @staticmethod
    def _critic_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        extra = {k.split("/", 1)[1]: v for k, v in batch.items() if k.startswith("critic/")}
        return {"state": batch["state"], "obs": batch["obs"], **extra}

    def _critic_rows(self, num_agents: int) -> int:
        """Rows of (time, environment) one critic pass holds: ``ppo.chunk_samples`` values, i.e.
        that many rows for a centralised critic (one value per row), fewer for a per-agent one."""
        per_row = num_agents if self.critic.per_agent else 1
        return max(1, self.ppo.chunk_samples // per_row)

    def _policy_terms(self, obs: Tensor, actions: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor | None,
                      reduce: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        """(policy loss, entropy, log-ratio, ratio) of a batch of policy samples; ``reduce`` turns a
        per-sample tensor into the batch's term (a mean, or a sum over a minibatch's normaliser)."""
        if obs.numel() == 0:  # no active agent here: ratio 1, nothing clipped, no KL
            zero = adv.new_zeros(())
            return zero, zero, zero, adv.new_ones(())
        dist = self.actor.distribution(obs, mask)
        log_ratio = self.actor.log_prob(dist, actions) - old_logp
        ratio = log_ratio.exp()
        surrogate = torch.max(-adv * ratio, -adv * ratio.clamp(1 - self.ppo.clip_coef, 1 + self.ppo.clip_coef))
        return reduce(surrogate), reduce(self.actor.entropy(dist)), log_ratio, ratio

    def _policy_diagnostics(self, log_ratio: Tensor, ratio: Tensor, reduce: Callable[[Tensor], Tensor]) -> tuple[float, float]:
        """(approx_kl, clipfrac) of a batch, reduced as its loss terms were (CleanRL's estimators)."""
        with torch.no_grad():
            clipped = ((ratio - 1.0).abs() > self.ppo.clip_coef).to(ratio.dtype)
            return reduce((ratio - 1) - log_ratio).item(), reduce(clipped).item()

    def _backward(self, loss: Tensor, parts: str) -> None:
        """``loss.backward()``, after checking that the loss is finite (``parts`` names its terms)."""
        if not torch.isfinite(loss):
            raise TrainingError(
                f"PPO loss became {loss.item()} ({parts}); lower ppo.learning_rate or check the environment's rewards"
            )
        loss.backward()

    def _minibatch_backward(self, mb: dict[str, Tensor]) -> dict[str, float]:
        """Backward of the PPO loss on a whole minibatch in one pass (the losses are its means);
        the loss's parts, for the metrics."""
        ppo = self.ppo
        obs, actions, old_logp, adv, weight = self._policy_samples(mb)
        mask = self._policy_mask(mb)

        def reduce(values: Tensor) -> Tensor:
            return _weighted_mean(values, weight)

        pg_loss, entropy, log_ratio, ratio = self._policy_terms(obs, actions, old_logp, adv, mask, reduce)
        value = self.critic(self._critic_inputs(mb))
        v_loss = 0.5 * (value - mb["target"]).square().mean()
        loss = pg_loss - ppo.entropy_coef * entropy + ppo.value_coef * v_loss
        self._backward(loss, f"policy {pg_loss.item()}, value {v_loss.item()}")
        approx_kl, clipfrac = self._policy_diagnostics(log_ratio, ratio, reduce)
        return {"loss": loss.item(), "policy_loss": pg_loss.item(), "value_loss": v_loss.item(),
                "entropy": entropy.item(), "approx_kl": approx_kl, "clipfrac": clipfrac}  # fmt: skip

    def _chunked_backward(self, mb: dict[str, Tensor]) -> dict[str, float]:
        """Backward of the PPO loss on a minibatch too large for one pass, in chunks.

        The loss is linear in its per-sample terms, so each chunk's sums over the minibatch's
        normalisers (active samples for the policy, values for the critic) give gradients that
        add up to the minibatch's. The critic and the actor are chunked apart, each by what one
        of its passes holds: the policy over at most ``ppo.chunk_samples`` agent-samples (the
        active samples of any rows with shared weights, so that a chunk stays that size however
        many agents a row holds), the critic over :meth:`_critic_rows` rows (a centralised
        critic takes the whole minibatch at once). A centralised critic's parameters grow with
        the state, i.e. with N; run once per chunk of the policy, accumulating its gradients
        made the update grow like N^2.
        """
        ppo = self.ppo
        active = mb["active"]
        policy_total = max(float(active.sum()), 1.0)
        value_total = float(mb["target"].numel())
        rows = active.shape[0]

        v_loss = 0.0
        step = self._critic_rows(active.shape[1])
        for i in range(0, rows, step):
            part = {k: v[i : i + step] for k, v in mb.items()}
            value = self.critic(self._critic_inputs(part))
            term = 0.5 * (value - part["target"]).square().sum() / value_total
            self._backward(ppo.value_coef * term, f"value {term.item()}")
            v_loss += term.item()

        obs, actions, old_logp, adv, weight = self._policy_samples(mb)
        mask = self._policy_mask(mb)
        if weight is None:  # shared weights: [S, ...] active samples, chunked as they are
            step, chunk = ppo.chunk_samples, (lambda t, i: None if t is None else t[i : i + ppo.chunk_samples])
            count = obs.shape[0]
        else:  # per-agent weights: [rows, N, ...], chunked over rows
            step = max(1, rows * ppo.chunk_samples // max(1, active.numel()))
            chunk, count = (lambda t, i: None if t is None else t[i : i + step]), rows
        sums = {"policy_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clipfrac": 0.0}
        for i in range(0, max(count, 1), step):
            w = chunk(weight, i)

            def reduce(values: Tensor, w: Tensor | None = w) -> Tensor:
                return (values.sum() if w is None else (values * w).sum()) / policy_total

            pg, ent, log_ratio, ratio = self._policy_terms(
                chunk(obs, i), chunk(actions, i), chunk(old_logp, i), chunk(adv, i), chunk(mask, i), reduce
            )
            if pg.requires_grad:
                self._backward(pg - ppo.entropy_coef * ent, f"policy {pg.item()}")
            kl, clipfrac = self._policy_diagnostics(log_ratio, ratio, reduce) if pg.requires_grad else (0.0, 0.0)
            for key, value in (("policy_loss", pg.item()), ("entropy", ent.item()), ("approx_kl", kl), ("clipfrac", clipfrac)):
                sums[key] += value
        loss = sums["policy_loss"] - ppo.entropy_coef * sums["entropy"] + ppo.value_coef * v_loss
        return {"loss": loss, "value_loss": v_loss, **sums}

    def _policy_mask(self, mb: dict[str, Tensor]) -> Tensor | None:
        """The minibatch's action mask, gathered to the active samples as the policy's are."""
        mask = mb.get("action_mask")
        if mask is not None and self.ppo.shared_parameters:
            mask = mask[mb["active"]]
        return mask
