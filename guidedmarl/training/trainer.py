"""`Trainer`: PPO for N cooperative agents; the learner is a critic plus an advantage estimator.

One training episode is, top to bottom:

1. **Rollout** (:func:`~guidedmarl.training.rollout.rollout`): every parallel environment plays
   one episode; at each step the actor samples actions, the critic values the step, and the
   estimator records what it needs (DG-PG: the guidance weights g of the analytical model,
   one batched call per step, never per agent).
2. **Advantages**: GAE on the shared team reward with the critic's values: one value per
   environment (centralised critic) or one per agent (local and mean-field critics).
3. **Estimator**: turns the GAE advantages into each agent's advantage (MAPPO/IPPO: the
   standardised A_hat; DG-PG: (1 - alpha) A_hat - alpha g_hat).
4. **Update**: clipped PPO surrogate over minibatches of (time, environment) rows holding
   all N agents, so per-agent parameters and parameter sharing use the same code (the loss and
   its backward pass, whole or in chunks: :mod:`guidedmarl.training.ppo_loss`).

The trainer knows no learner by name: critics and estimators come from their registries
(:mod:`guidedmarl.training.critics`, :mod:`guidedmarl.guidance.estimator`), so DG-PG *is*
MAPPO's critic with another estimator, and with alpha = 0 the two give identical numbers.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.env import MultiAgentVecEnv, Step
from guidedmarl.errors import TrainingError
from guidedmarl.finite import all_finite
from guidedmarl.guidance.estimator import ESTIMATORS, AdvantageEstimator, StepInputs
from guidedmarl.training.critics import CRITICS, Critic
from guidedmarl.training.networks import Actor, actor_option_features
from guidedmarl.training.ppo_loss import PPOLoss
from guidedmarl.training.advantages import _require_finite, compute_gae, explained_variance
from guidedmarl.training.rollout import Action, Rollout, StepView, Trajectory, rollout
from guidedmarl.training.value_norm import ValueNormalizer

if TYPE_CHECKING:  # the config modules import the registries this module fills
    from guidedmarl.config import PPOConfig
    from guidedmarl.learners import LearnerConfig


class Trainer(PPOLoss):
    """PPO trainer for any learner (critic kind + advantage estimator).

    Args:
        env: batched training environments (one episode each per training episode).
        ppo: PPO settings (identical across learners).
        learner: the critic and estimator settings (:class:`~guidedmarl.learners.LearnerConfig`).
        model: the domain's analytical model (None if it has none; estimators that need one
            then refuse with a clear message).
        seed: seeds the minibatch shuffling generator and the estimator (the global torch
            seed is the caller's: :func:`guidedmarl.experiment.build` sets it from the run seed).
        total_episodes: training length, for the estimator's schedule (progress in [0, 1]).
        device: where the networks, buffers and advantages live; the environment's tensors
            must already be there (:attr:`guidedmarl.Domain.device`).
    """

    def __init__(
        self,
        env: MultiAgentVecEnv,
        ppo: PPOConfig,
        learner: LearnerConfig,
        model: AnalyticalModel | None,
        seed: int,
        total_episodes: int,
        device: torch.device | str = "cpu",
    ) -> None:
        spec = env.spec
        self.device = torch.device(device)
        self.env, self.ppo, self.learner, self.model = env, ppo, learner, model
        self.total_episodes = total_episodes
        self.episode = 0
        self.actor = Actor(
            spec.num_agents,
            spec.obs_dim,
            ppo.hidden,
            ppo.shared_parameters,
            num_actions=spec.num_actions if spec.action_kind == "discrete" else 0,
            action_dim=spec.action_dim if spec.action_kind == "continuous" else 0,
            option_features=actor_option_features(ppo.actor, spec),
        )
        critic_cls = CRITICS.get(learner.critic.kind)
        self.critic: Critic = critic_cls(spec, learner.critic, ppo.hidden, ppo.shared_parameters)
        self.estimator: AdvantageEstimator = ESTIMATORS.get(learner.estimator.kind)(learner.estimator, model, seed)
        self.value_norm = ValueNormalizer(ppo.value_normalization)
        for module in (self.actor, self.critic, self.value_norm):
            module.to(self.device)
        params = list(self.actor.parameters()) + list(self.critic.parameters())
        self.optimizer = torch.optim.Adam(params, lr=ppo.learning_rate, eps=1e-5)
        self.shuffle = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, step: Step, deterministic: bool = True) -> Tensor:
        """Actions of the current policy for an environment step (used for evaluation)."""
        if deterministic:
            return self.actor.mode(step.obs, step.active, step.action_mask)
        actions, _, _ = self.actor.sample(step.obs, step.active, step.action_mask)
        return actions

    def _sample(self, step: Step) -> Action:
        actions, logp, mean = self.actor.sample(step.obs, step.active, step.action_mask)
        return Action(actions, logp, mean)

    def _record_policy(self, view: StepView) -> dict[str, Tensor]:
        step = view.step
        extra = self.critic.extra_inputs(step, view.actions, view.env)
        values = self.value_norm.denormalize(self.critic({"state": step.state, "obs": step.obs, **extra}))
        assert view.action.log_prob is not None
        record = {"obs": step.obs, "state": step.state, "active": step.active, "actions": view.actions}
        record |= {"logp": view.action.log_prob, "values": values}
        if step.action_mask is not None:
            record["action_mask"] = step.action_mask
        return record | {f"critic/{k}": v for k, v in extra.items()}

    def _record_estimator(self, view: StepView) -> dict[str, Tensor]:
        inputs = StepInputs(view.actions, view.action.mean, view.step.active, view.context)
        return {f"estimator/{k}": v for k, v in self.estimator.on_step(inputs).items()}

    # ------------------------------------------------------------------ rollout
    def _value_of(self, step: Step) -> Tensor:
        """The critic's value of a step (reward units); a critic with action inputs sees actions
        sampled from the current policy, a one-sample estimate of the state's value."""
        actions, _, _ = self.actor.sample(step.obs, step.active, step.action_mask)
        extra = self.critic.extra_inputs(step, actions, self.env)
        return self.value_norm.denormalize(self.critic({"state": step.state, "obs": step.obs, **extra}))

    def _bootstraps(self, traj: Trajectory, values: Tensor) -> tuple[Tensor, Tensor]:
        """(bootstrap, next_value) of an auto-reset rollout (see :func:`compute_gae`)."""
        assert traj.dones is not None and traj.terminated is not None and traj.final is not None
        boot = torch.zeros_like(values)
        truncated = traj.dones & ~traj.terminated
        for t, final in traj.finals.items():
            cut = truncated[t] if values.dim() == 2 else truncated[t].unsqueeze(-1)
            boot[t] = torch.where(cut, self._value_of(final), boot[t])
        return boot, self._value_of(traj.final)

    @torch.no_grad()
    def collect(self, seeds: list[int]) -> Rollout:
        """Play one rollout in every environment with the current (stochastic) policy: one
        episode each (fixed horizon) or ``horizon`` steps of auto-reset episodes."""
        hooks = {"critic": self._record_policy, "guidance": self._record_estimator}
        traj = rollout(self.env, self._sample, seeds, hooks)
        rec = traj.records
        horizon = traj.rewards.shape[0]
        info = {k: sum(float(v.float().mean()) for v in vals) / horizon for k, vals in traj.info.items()}
        bootstrap = next_value = None
        if traj.dones is None:
            info["episodic_return"] = float(traj.rewards.sum(0).mean())
        else:
            done = traj.episode_returns or traj.returns.tolist()  # no episode ended: the partial returns
            info["episodic_return"] = sum(done) / len(done)
            info["episodes_ended"] = float(len(traj.episode_returns))
            bootstrap, next_value = self._bootstraps(traj, rec["values"])
        return Rollout(
            obs=rec["obs"],
            state=rec["state"],
            active=rec["active"],
            actions=rec["actions"],
            log_probs=rec["logp"],
            values=rec["values"],
            rewards=traj.rewards,
            critic_inputs={k.split("/", 1)[1]: v for k, v in rec.items() if k.startswith("critic/")},
            estimator_records={k.split("/", 1)[1]: v for k, v in rec.items() if k.startswith("estimator/")},
            info=info,
            seconds=traj.seconds,
            agent_rewards=traj.agent_rewards,
            action_mask=rec.get("action_mask"),
            dones=traj.dones,
            bootstrap=bootstrap,
            next_value=next_value,
        )

    # ------------------------------------------------------------------ update
    def learning_rewards(self, ro: Rollout) -> Tensor:
        """The rewards GAE uses: each agent's own (``[T, E, N]``) where the critic asks for them
        (``reward: own``), values are per agent and the environment gave them; else the team's."""
        own = getattr(self.learner.critic, "reward", "team") == "own"
        if own and ro.agent_rewards is not None and ro.values.dim() == 3:
            return ro.agent_rewards.to(ro.values.dtype)
        return ro.rewards

    def update(self, ro: Rollout, progress: float) -> dict[str, float]:
        """PPO update on one rollout; returns CleanRL-style metrics (losses, KL, clip fraction, EV)."""
        ppo = self.ppo
        horizon, num_envs, n = ro.active.shape
        _require_finite(ro.values, "the critic's values of the rollout", "the critic's weights or its inputs")
        adv = compute_gae(self.learning_rewards(ro), ro.values, ppo.gamma, ppo.gae_lambda, ro.dones, ro.bootstrap, ro.next_value)
        _require_finite(adv, "the GAE advantages", "the rewards or the critic's values")
        returns = adv + ro.values
        agent_adv = adv if adv.dim() == 3 else adv.unsqueeze(-1).expand(horizon, num_envs, n)
        mixed = self.estimator.advantage(agent_adv, ro.estimator_records, ro.active, progress)
        if not all_finite(mixed[ro.active]):
            raise TrainingError(f"the estimator '{self.estimator.kind}' produced NaN or infinite advantages")
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
        for key, value in ro.critic_inputs.items():
            flat[f"critic/{key}"] = value.reshape(rows, *value.shape[2:])
        if ro.action_mask is not None:
            flat["action_mask"] = ro.action_mask.reshape(rows, n, -1)
        mb_size = max(1, rows // ppo.num_minibatches)
        stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")}
        for _ in range(ppo.update_epochs):
            order = torch.randperm(rows, generator=self.shuffle).to(self.device)  # CPU generator: same order on every device
            for start in range(0, rows, mb_size):
                mb = {k: v[order[start : start + mb_size]] for k, v in flat.items()}
                self.optimizer.zero_grad()
                samples = int(mb["active"].sum()) if ppo.shared_parameters else mb["active"].numel()
                if samples <= ppo.chunk_samples:
                    losses = self._minibatch_backward(mb)
                else:  # chunks whose gradients add up to the minibatch's
                    losses = self._chunked_backward(mb)
                grad_norm = nn.utils.clip_grad_norm_(
                    list(self.actor.parameters()) + list(self.critic.parameters()), ppo.max_grad_norm
                )
                if not torch.isfinite(grad_norm):  # checked before the step: a NaN never reaches the weights
                    raise TrainingError(
                        f"the gradient norm is {grad_norm.item()} (a finite loss {losses['loss']:.4g} gave a non-finite "
                        "gradient); the optimiser step was not taken"
                    )
                self.optimizer.step()
                for key in stats:
                    stats[key].append(losses[key])
        metrics = {k: sum(v) / len(v) for k, v in stats.items()}
        with torch.no_grad():
            step = self._critic_rows(n)
            pred = torch.cat([self.value_norm.denormalize(self.critic(self._critic_inputs({k: v[i : i + step] for k, v in flat.items()})))
                              for i in range(0, rows, step)])  # fmt: skip
            metrics["explained_variance"] = explained_variance(pred.flatten(), returns.reshape(rows, -1).flatten())
        return metrics

    def train_episode(self, seeds: list[int]) -> dict[str, float]:
        """Collect one episode per environment and update once; returns the episode's metrics.

        Names are namespaced (:mod:`guidedmarl.loggers`): ``train/...`` for the PPO update and
        the training return, ``guidance/...`` for the estimator's diagnostics, ``env/...`` for
        the domain's step diagnostics, ``time/...`` for the seconds of each phase.
        """
        progress = self.episode / max(1, self.total_episodes - 1)
        lr = self.ppo.learning_rate
        if self.ppo.anneal_lr:  # linear to 0 over the run, as CleanRL's ppo.py (1 at the first update)
            lr *= 1.0 - self.episode / max(1, self.total_episodes)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        ro = self.collect(seeds)
        t1 = time.perf_counter()
        update = self.update(ro, progress)
        t2 = time.perf_counter()
        diagnostics = self.estimator.diagnostics(ro.estimator_records, ro.active, progress)
        metrics = {f"train/{k}": v for k, v in update.items()}
        metrics["train/episodic_return"] = ro.info["episodic_return"]
        metrics["train/learning_rate"] = lr
        metrics |= {f"guidance/{k}": v for k, v in diagnostics.items()}
        metrics |= {f"env/{k}": v for k, v in ro.info.items() if k != "episodic_return"}
        metrics |= {
            "time/rollout_seconds": t1 - t0,
            "time/guidance_seconds": ro.seconds.get("guidance", 0.0),
            "time/update_seconds": t2 - t1,
        }
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
