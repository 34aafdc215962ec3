"""Continuous actions end to end: the trainer feeds the difference against the policy mean.

A toy "steering" problem: N agents each push a shared D-dimensional state,
x = x0 + sum_i b_i a_i (a_i in R), towards a reference x_ref drawn per scenario; the team
reward is -1/2 ||x - x_ref||^2, so the guidance objective and the reward agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel, GuidanceError
from guidedmarl.config import PPOConfig
from guidedmarl.env import EnvSpec, MultiAgentVecEnv, Step
from guidedmarl.learners import LearnerConfig
from guidedmarl.testing import LinearContext, LinearContinuousModel, default_dtype
from guidedmarl.training.trainer import Trainer
from guidedmarl.guidance.weights import guidance_weights

N, D, HORIZON = 6, 2, 4


@dataclass
class SteerContext:
    x0: Tensor  # [E, D]
    b: Tensor  # [N, D]
    x_ref: Tensor  # [E, D]


class SteerModel(AnalyticalModel):
    action_kind = "continuous"

    def system_state(self, actions: Tensor, context: SteerContext) -> Tensor:
        return context.x0 + torch.einsum("enk,nd->ed", actions, context.b.to(actions.dtype))

    def reference_state(self, context: SteerContext) -> Tensor:
        return context.x_ref


class SteerEnv(MultiAgentVecEnv):
    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.b = torch.randn(N, D, generator=torch.Generator().manual_seed(7)) / N**0.5
        self.spec = EnvSpec(N, obs_dim=2 * D, state_dim=2 * D, horizon=HORIZON, action_kind="continuous", action_dim=1)

    def reset(self, seeds: list[int]) -> Step:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.x_ref = torch.stack([torch.randn(D, generator=g) for g in gens])
        self.x0 = torch.zeros(self.num_envs, D)
        self.t = 0
        return self._observe(torch.zeros(self.num_envs))

    def model_context(self) -> SteerContext:
        return SteerContext(self.x0, self.b, self.x_ref)

    def step(self, actions: Tensor) -> Step:
        self.check_actions(actions)
        x = SteerModel().system_state(actions, self.model_context())
        self.t += 1
        return self._observe(-0.5 * (x - self.x_ref).square().sum(-1))

    def _observe(self, reward: Tensor) -> Step:
        e = self.num_envs
        obs = torch.cat([self.b.expand(e, N, D), self.x_ref.unsqueeze(1).expand(e, N, D)], dim=-1)
        return Step(
            obs=obs,
            state=torch.cat([self.x_ref, self.x0], dim=-1),
            active=torch.ones(e, N, dtype=torch.bool),
            reward=reward,
            done=torch.full((e,), self.t >= HORIZON),
        )


def _trainer(alpha: float, seed: int = 0, exact: bool = False) -> Trainer:
    torch.manual_seed(seed)
    ppo = PPOConfig(hidden=[32, 32], learning_rate=3e-3)
    estimator = {"kind": "dgpg", "alpha": {"kind": "constant", "value": alpha}}
    estimator["weight"] = "exact_difference" if exact else "first_order"
    learner = LearnerConfig(critic={"kind": "central"}, estimator=estimator)
    return Trainer(SteerEnv(16), ppo, learner, SteerModel(), seed=seed, total_episodes=40)


def test_trainer_passes_the_policy_mean_and_stores_the_difference_weight() -> None:
    trainer = _trainer(alpha=1.0)
    calls: list[tuple[Tensor, Tensor, Tensor]] = []
    original = trainer.estimator.on_step

    def recording(inputs):  # noqa: ANN001, ANN202
        out = original(inputs)
        calls.append((inputs.actions, inputs.mean_action, out["guidance"]))
        return out

    trainer.estimator.on_step = recording  # type: ignore[method-assign]
    ro = trainer.collect([0, 1, 2, 3] * 4)
    assert len(calls) == HORIZON
    for t, (actions, mean, weight) in enumerate(calls):
        assert mean is not None
        torch.testing.assert_close(mean, trainer.actor.net(ro.obs[t]))  # the policy mean at that step
        ctx = SteerContext(torch.zeros(16, D), trainer.env.b, trainer.env.x_ref)  # type: ignore[attr-defined]
        x = SteerModel().system_state(actions, ctx)
        expected = ((x - ctx.x_ref) @ trainer.env.b.T) * (actions - mean).squeeze(-1)  # type: ignore[attr-defined]
        torch.testing.assert_close(weight, expected)
        torch.testing.assert_close(ro.guidance[t], expected)  # type: ignore[index]


@pytest.mark.parametrize("exact", [False, True])
def test_guidance_alone_steers_the_team_to_the_reference(exact: bool) -> None:
    """alpha = 1: only the descent term drives the policy, and the test reward must improve
    a lot (with the raw pathwise g as the advantage it would not: docs/theory_tests.md)."""
    torch.set_num_threads(1)
    trainer = _trainer(alpha=1.0, exact=exact)
    test_env, seeds = SteerEnv(16), list(range(1000, 1016))

    def greedy_return() -> float:
        step, total = test_env.reset(seeds), torch.zeros(16)
        for _ in range(HORIZON):
            step = test_env.step(trainer.act(step, deterministic=True))
            total += step.reward
        return float(total.mean())

    before = greedy_return()
    for episode in range(40):
        trainer.train_episode([episode * 16 + j for j in range(16)])
    after = greedy_return()
    assert after > 0.5 * before, (before, after)  # rewards are negative: at least halve the distance


def test_bad_mean_action_shape_is_refused() -> None:
    with default_dtype():
        gen = torch.Generator().manual_seed(0)
        ctx = LinearContext(torch.randn(3, generator=gen), torch.randn(2, 3, 2, generator=gen), torch.randn(3, generator=gen))
        actions = torch.randn(1, 2, 2, generator=gen)
        with pytest.raises(GuidanceError, match="shape"):
            guidance_weights(LinearContinuousModel(), actions, ctx, mean_action=torch.zeros(1, 2, 1))
