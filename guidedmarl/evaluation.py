"""Evaluation on held-out scenarios, batched: scenario j is environment j of one batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from guidedmarl.domain import HeuristicPolicy
from guidedmarl.env import MultiAgentVecEnv, Step


@dataclass
class EvalResult:
    """Episodic team return on each test scenario, and the episode means of step diagnostics."""

    returns: list[float]
    info: dict[str, float] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(torch.tensor(self.returns, dtype=torch.float64).mean())

    @property
    def std(self) -> float:
        t = torch.tensor(self.returns, dtype=torch.float64)
        return float(t.std()) if t.numel() > 1 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {"mean": self.mean, "std": self.std, "returns": self.returns, "info": self.info}


@torch.no_grad()
def run_policy(env: MultiAgentVecEnv, seeds: list[int], act: Callable[[Step], Tensor]) -> EvalResult:
    """Play one episode per seed (``len(seeds)`` must equal ``env.num_envs``).

    Runs inside ``torch.random.fork_rng`` so that evaluating never changes the random
    stream of training: a run's numbers do not depend on how often it is evaluated.
    """
    if len(seeds) != env.num_envs:
        raise ValueError(f"{len(seeds)} seeds for a batch of {env.num_envs} environments")
    with torch.random.fork_rng(devices=[]):
        step = env.reset(seeds)
        total = torch.zeros(env.num_envs, dtype=torch.float64)
        info_sums: dict[str, Tensor] = {}
        for _ in range(env.spec.horizon):
            step = env.step(act(step))
            total += step.reward.to(torch.float64)
            for k, v in step.info.items():
                info_sums[k] = info_sums.get(k, 0.0) + v.to(torch.float64)
    horizon = env.spec.horizon
    info = {k: float(v.mean()) / horizon for k, v in info_sums.items()}
    return EvalResult(returns=total.tolist(), info=info)


def evaluate_heuristic(
    factory: Callable[[], HeuristicPolicy], env: MultiAgentVecEnv, seeds: list[int], seed: int
) -> EvalResult:
    """Evaluate a heuristic baseline on the given scenarios."""
    policy = factory()
    policy.reset(env, seed)
    return run_policy(env, seeds, lambda step: policy(env, step))
