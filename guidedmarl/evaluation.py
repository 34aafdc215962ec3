"""Evaluation on held-out scenarios, batched: scenario j is environment j of one batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from guidedmarl.domain import HeuristicPolicy
from guidedmarl.env import MultiAgentVecEnv, Step
from guidedmarl.training.rollout import rollout


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


def _cuda_devices() -> list[int]:
    """The CUDA devices whose generators evaluation must leave as it found them (none without CUDA)."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@torch.no_grad()
def run_policy(
    env: MultiAgentVecEnv, seeds: list[int], act: Callable[[Step], Tensor], sample_seed: int | None = None
) -> EvalResult:
    """Play one episode per seed (``len(seeds)`` must equal ``env.num_envs``).

    Runs inside ``torch.random.fork_rng`` so that evaluating never changes the random
    stream of training: a run's numbers do not depend on how often it is evaluated. With
    ``sample_seed`` the global torch generator is seeded with it inside the fork, so a policy
    that samples its actions is scored on the same random numbers at every evaluation (the
    same checkpoint gives the same figure, in the run and in ``guidedmarl evaluate``, and
    successive checkpoints are compared on common random numbers).
    """
    with torch.random.fork_rng(devices=_cuda_devices()):
        if sample_seed is not None:
            torch.manual_seed(sample_seed)
        traj = rollout(env, act, seeds)
    return EvalResult(returns=traj.returns.tolist(), info=traj.info_means())


def evaluate_heuristic(
    factory: Callable[[], HeuristicPolicy], env: MultiAgentVecEnv, seeds: list[int], seed: int
) -> EvalResult:
    """Evaluate a heuristic baseline on the given scenarios."""
    policy = factory()
    policy.reset(env, seed)
    return run_policy(env, seeds, lambda step: policy(env, step))
