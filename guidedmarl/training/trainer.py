"""`Trainer`: PPO for N cooperative agents, as MAPPO, IPPO or DG-PG.

One training episode is, top to bottom:

1. **Rollout** (``collect``): every parallel environment plays one episode; at each step the
   actor samples actions, the critic values the state, and, for DG-PG, the analytical model
   turns the pre-action context and the chosen actions into guidance weights g (one batched
   call per step, never per agent).
2. **Advantages**: GAE on the shared team reward with the critic's values: one value per
   environment for MAPPO / DG-PG (centralised critic on the global state), one per agent for
   IPPO (local critic on the agent's observation).
3. **Mixing**: :class:`~guidedmarl.guidance.GuidedEstimator` forms
   A_DG = (1 - alpha) A_hat - alpha g_hat (alpha = 0, or guidance off: plain A_hat).
4. **Update**: clipped PPO surrogate over minibatches of (time, environment) rows holding
   all N agents, so per-agent parameters and parameter sharing use the same code.

DG-PG *is* MAPPO plus step 3; with alpha = 0 the two produce identical numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.config import Algo, PPOConfig
from guidedmarl.env import MultiAgentVecEnv, Step
from guidedmarl.guidance.estimator import GuidedEstimator
from guidedmarl.training.networks import Actor, CentralCritic, LocalCritic
from guidedmarl.training.value_norm import ValueNormalizer


class TrainingError(RuntimeError):
    """Raised when training produces unusable numbers (NaN losses, NaN rewards...)."""


@dataclass
class Rollout:
    """One episode of every parallel environment; leading dims ``[T, E]``."""

    obs: Tensor  # [T, E, N, obs_dim]
    state: Tensor  # [T, E, state_dim]
    active: Tensor  # [T, E, N] bool
    actions: Tensor  # [T, E, N] or [T, E, N, action_dim]
    log_probs: Tensor  # [T, E, N]
    values: Tensor  # [T, E] (central critic) or [T, E, N] (local), in reward units
    rewards: Tensor  # [T, E]
    guidance: Tensor | None  # [T, E, N]
    info: dict[str, float]
    guidance_seconds: float


def compute_gae(rewards: Tensor, values: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimation over a fixed-horizon episode that ends at T.

    ``rewards`` is ``[T, E]``; ``values`` is ``[T, E]`` or ``[T, E, N]`` (the reward is then
    broadcast to every agent). The episode end is terminal: no bootstrap after step T-1.
    """
    if values.dim() == rewards.dim() + 1:
        rewards = rewards.unsqueeze(-1).expand_as(values)
    adv = torch.zeros_like(values)
    last = torch.zeros_like(values[0])
    horizon = rewards.shape[0]
    for t in reversed(range(horizon)):
        next_value = values[t + 1] if t + 1 < horizon else torch.zeros_like(values[t])
        delta = rewards[t] + gamma * next_value - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv


def _weighted_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """Mean of ``values`` (weight None) or their ``weight``-weighted mean; 0 for no samples."""
    if weight is None:
        return values.sum() / max(values.numel(), 1)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def explained_variance(pred: Tensor, target: Tensor) -> float:
    """1 - Var(target - pred) / Var(target): 1 is a perfect critic, <= 0 a useless one."""
    var = target.var()
    return float("nan") if var == 0 else float(1.0 - (target - pred).var() / var)


class Trainer:
    """PPO trainer for MAPPO (``algo='mappo'``), IPPO (``'ippo'``) and DG-PG (``'dgpg'``).

    Args:
        env: batched training environments (one episode each per training episode).
        algo: which learner; DG-PG uses the centralised critic plus guidance.
        ppo: PPO settings (identical across the three learners).
        estimator: advantage mixing; its ``enabled`` flag must be True only for DG-PG.
        model: the analytical model (required for DG-PG, unused otherwise).
        seed: seeds the minibatch shuffling generator (the global torch seed is the
            caller's: :func:`guidedmarl.run.run` sets it once from the run seed).
        total_episodes: training length, for the alpha schedule's progress.
    """

    def __init__(
        self,
        env: MultiAgentVecEnv,
        algo: Algo,
        ppo: PPOConfig,
        estimator: GuidedEstimator,
        model: AnalyticalModel | None,
        seed: int,
        total_episodes: int,
    ) -> None:
        if algo == "dgpg" and model is None:
            raise ValueError("algo 'dgpg' needs an AnalyticalModel (model=None given)")
        if estimator.enabled and algo != "dgpg":
            raise ValueError(f"guidance is only used by algo 'dgpg', not '{algo}'")
        spec = env.spec
        self.env, self.algo, self.ppo, self.estimator, self.model = env, algo, ppo, estimator, model
        self.total_episodes = total_episodes
        self.episode = 0
        self.actor = Actor(
            spec.num_agents,
            spec.obs_dim,
            ppo.hidden,
            ppo.shared_parameters,
            num_actions=spec.num_actions if spec.action_kind == "discrete" else 0,
            action_dim=spec.action_dim if spec.action_kind == "continuous" else 0,
        )
        self.critic: nn.Module
        if algo == "ippo":
            self.critic = LocalCritic(spec.num_agents, spec.obs_dim, ppo.hidden, ppo.shared_parameters)
        else:
            self.critic = CentralCritic(spec.state_dim, ppo.hidden)
        self.value_norm = ValueNormalizer(ppo.value_normalization)
        params = list(self.actor.parameters()) + list(self.critic.parameters())
        self.optimizer = torch.optim.Adam(params, lr=ppo.learning_rate, eps=1e-5)
        self.shuffle = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, step: Step, deterministic: bool = True) -> Tensor:
        """Actions of the current policy for an environment step (used for evaluation)."""
        if deterministic:
            return self.actor.mode(step.obs, step.active)
        actions, _, _ = self.actor.sample(step.obs, step.active)
        return actions

    def _values(self, state: Tensor, obs: Tensor) -> Tensor:
        return self.critic(state, obs)

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def collect(self, seeds: list[int]) -> Rollout:
        """Play one episode in every environment with the current (stochastic) policy."""
        env, spec = self.env, self.env.spec
        use_guidance = self.estimator.enabled
        step = env.reset(seeds)
        buf: dict[str, list[Tensor]] = {k: [] for k in ("obs", "state", "active", "actions", "logp", "values", "rew", "g")}
        info_sums: dict[str, float] = {}
        guidance_seconds = 0.0
        for _ in range(spec.horizon):
            actions, logp, mean = self.actor.sample(step.obs, step.active)
            values = self.value_norm.denormalize(self._values(step.state, step.obs))
            if use_guidance:
                t0 = time.perf_counter()
                assert self.model is not None
                # continuous actions: the weight is the difference against the policy mean
                # (raw pathwise g is not a score-function estimator; docs/theory_tests.md)
                g = self.model.guidance(
                    actions, env.model_context(), exact_difference=self.estimator.exact_difference, mean_action=mean
                )
                if g.shape != step.active.shape:
                    raise TrainingError(
                        f"guidance has shape {tuple(g.shape)}, expected one weight per agent {tuple(step.active.shape)}"
                    )
                buf["g"].append(g * step.active)
                guidance_seconds += time.perf_counter() - t0
            for key, val in (("obs", step.obs), ("state", step.state), ("active", step.active)):
                buf[key].append(val)
            buf["actions"].append(actions)
            buf["logp"].append(logp)
            buf["values"].append(values)
            step = env.step(actions)
            if not torch.isfinite(step.reward).all():
                raise TrainingError("the environment returned a NaN or infinite reward")
            buf["rew"].append(step.reward)
            for k, v in step.info.items():
                info_sums[k] = info_sums.get(k, 0.0) + float(v.float().mean())
        rewards = torch.stack(buf["rew"])
        info = {k: v / spec.horizon for k, v in info_sums.items()}
        info["episodic_return"] = float(rewards.sum(0).mean())
        return Rollout(
            obs=torch.stack(buf["obs"]),
            state=torch.stack(buf["state"]),
            active=torch.stack(buf["active"]),
            actions=torch.stack(buf["actions"]),
            log_probs=torch.stack(buf["logp"]),
            values=torch.stack(buf["values"]),
            rewards=rewards,
            guidance=torch.stack(buf["g"]) if use_guidance else None,
            info=info,
            guidance_seconds=guidance_seconds,
        )

    # ------------------------------------------------------------------ update
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

    def update(self, ro: Rollout, progress: float) -> dict[str, float]:
        """PPO update on one rollout; returns CleanRL-style metrics."""
        ppo = self.ppo
        horizon, num_envs, n = ro.active.shape
        adv = compute_gae(ro.rewards, ro.values, ppo.gamma, ppo.gae_lambda)
        returns = adv + ro.values
        agent_adv = adv if adv.dim() == 3 else adv.unsqueeze(-1).expand(horizon, num_envs, n)
        mixed = self.estimator.mixed_advantage(agent_adv, ro.guidance, ro.active, progress)
        self.value_norm.update(returns)
        targets = self.value_norm.normalize(returns)

        rows = horizon * num_envs
        flat = {
            "obs": ro.obs.reshape(rows, n, -1),
            "state": ro.state.reshape(rows, -1),
            "active": ro.active.reshape(rows, n),
            "actions": ro.actions.reshape(rows, n, *ro.actions.shape[3:]),
            "logp": ro.log_probs.reshape(rows, n),
            "adv": mixed.reshape(rows, n),
            "target": targets.reshape(rows, *targets.shape[2:]),
        }
        mb_size = max(1, rows // ppo.num_minibatches)
        stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")}
        for _ in range(ppo.update_epochs):
            order = torch.randperm(rows, generator=self.shuffle)
            for start in range(0, rows, mb_size):
                idx = order[start : start + mb_size]
                mb = {k: v[idx] for k, v in flat.items()}
                obs, actions, old_logp, adv, weight = self._policy_samples(mb)
                if obs.numel() == 0:  # no active agent in this minibatch: value loss only
                    log_ratio = ratio = pg_loss = entropy = adv.new_zeros(())
                else:
                    dist = self.actor.distribution(obs)
                    log_ratio = self.actor.log_prob(dist, actions) - old_logp
                    ratio = log_ratio.exp()
                    surrogate = torch.max(-adv * ratio, -adv * ratio.clamp(1 - ppo.clip_coef, 1 + ppo.clip_coef))
                    pg_loss = _weighted_mean(surrogate, weight)
                    entropy = _weighted_mean(self.actor.entropy(dist), weight)
                value = self._values(mb["state"], mb["obs"])
                v_loss = 0.5 * (value - mb["target"]).square().mean()
                loss = pg_loss - ppo.entropy_coef * entropy + ppo.value_coef * v_loss
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"PPO loss became {loss.item()} (policy {pg_loss.item()}, value {v_loss.item()}); "
                        "lower ppo.learning_rate or check the environment's rewards"
                    )
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(
                    list(self.actor.parameters()) + list(self.critic.parameters()), ppo.max_grad_norm
                )
                self.optimizer.step()
                with torch.no_grad():
                    stats["policy_loss"].append(pg_loss.item())
                    stats["value_loss"].append(v_loss.item())
                    stats["entropy"].append(entropy.item())
                    stats["approx_kl"].append(_weighted_mean((ratio - 1) - log_ratio, weight).item())
                    clipped = ((ratio - 1.0).abs() > ppo.clip_coef).to(ratio.dtype)
                    stats["clipfrac"].append(_weighted_mean(clipped, weight).item())
        metrics = {k: sum(v) / len(v) for k, v in stats.items()}
        with torch.no_grad():
            pred = self.value_norm.denormalize(self._values(flat["state"], flat["obs"]))
            metrics["explained_variance"] = explained_variance(pred.flatten(), returns.reshape(rows, -1).flatten())
        metrics["alpha"] = self.estimator.alpha(progress)
        if ro.guidance is not None:
            active = ro.active
            metrics["guidance_mean"] = float(ro.guidance[active].mean()) if active.any() else 0.0
        return metrics

    def train_episode(self, seeds: list[int]) -> dict[str, float]:
        """Collect one episode per environment and update once; returns all metrics."""
        progress = self.episode / max(1, self.total_episodes - 1)
        t0 = time.perf_counter()
        ro = self.collect(seeds)
        t1 = time.perf_counter()
        metrics = self.update(ro, progress)
        t2 = time.perf_counter()
        agent_steps = ro.active.numel()
        metrics.update(ro.info)
        metrics.update(
            rollout_seconds=t1 - t0,
            guidance_seconds=ro.guidance_seconds,
            update_seconds=t2 - t1,
            SPS=agent_steps / max(t2 - t0, 1e-9),
        )
        self.episode += 1
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, object]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "value_norm": self.value_norm.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "episode": self.episode,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.actor.load_state_dict(state["actor"])  # type: ignore[arg-type]
        self.critic.load_state_dict(state["critic"])  # type: ignore[arg-type]
        self.value_norm.load_state_dict(state["value_norm"])  # type: ignore[arg-type]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self.episode = int(state["episode"])  # type: ignore[arg-type]
