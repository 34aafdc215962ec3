"""Write your own domain: a complete one in about 150 lines, trained through the Python API.

The problem ("bins"): N agents each hold a job of random size every step and put it into
one of M bins of different capacities. The team is rewarded for spreading load evenly in
proportion to capacity: reward = -mean_k (u_k - u*)^2 * M, with u_k = load_k / capacity_k
the bin utilisations and u* = total load / total capacity.

The analytical model says exactly that: the state x is the vector of utilisations after the
agents act (affine in each agent's one-hot choice), and the reference x_ref is the uniform
utilisation u* (it depends only on exogenous totals). Everything else (influence z_i and
guidance g_i = <x - x_ref, z_i>) comes from the framework's generic autograd path.

Run:  python examples/custom_domain.py --agents 40 --episodes 15
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from guidedmarl import AnalyticalModel, Domain, EnvSpec, MultiAgentVecEnv, RunConfig, Step, register_domain
from guidedmarl.experiment import run_experiment as run


class BinsSettings(BaseModel):
    """Settings of the bins domain (validated; unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    agents_per_bin: int = Field(4, ge=1, le=1000, description="N / M")
    horizon: int = Field(10, ge=1, le=10_000, description="steps per episode")


@dataclass
class BinsContext:
    """What the analytical model needs before the agents act."""

    sizes: Tensor  # [E, N] job sizes
    capacity: Tensor  # [M]


class BinsEnv(MultiAgentVecEnv):
    """E parallel copies; every tensor op is batched over [E, N]."""

    def __init__(self, num_envs: int, num_agents: int, settings: BinsSettings) -> None:
        self.num_envs, self.n = num_envs, num_agents
        self.m = max(2, num_agents // settings.agents_per_bin)
        self.capacity = torch.linspace(1.0, 3.0, self.m) * num_agents / self.m
        self.spec = EnvSpec(num_agents=num_agents, obs_dim=1 + self.m, state_dim=self.m, horizon=settings.horizon,
                            action_kind="discrete", num_actions=self.m)
        self.gens: list[torch.Generator] = []
        self.t = 0
        self.sizes = torch.zeros(num_envs, num_agents)

    def _draw_sizes(self) -> None:
        self.sizes = torch.stack([torch.rand(self.n, generator=g) + 0.5 for g in self.gens])

    def _observe(self, reward: Tensor, done: bool) -> Step:
        cap = (self.capacity / self.capacity.sum()).expand(self.num_envs, self.n, self.m)
        obs = torch.cat([self.sizes.unsqueeze(-1), cap], dim=-1)
        return Step(obs=obs, state=cap[:, 0, :], active=torch.ones(self.num_envs, self.n, dtype=torch.bool),
                    reward=reward, done=torch.full((self.num_envs,), done))

    def reset(self, seeds: list[int]) -> Step:
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.t = 0
        self._draw_sizes()
        return self._observe(torch.zeros(self.num_envs), False)

    def model_context(self) -> BinsContext:
        return BinsContext(sizes=self.sizes, capacity=self.capacity)

    def step(self, actions: Tensor) -> Step:
        actions = self.check_actions(actions)
        x = BinsModel.utilisation(actions, self.sizes, self.capacity)
        target = self.sizes.sum(1, keepdim=True) / self.capacity.sum()
        reward = -(x - target).square().mean(1) * self.m
        self.t += 1
        self._draw_sizes()
        return self._observe(reward, self.t >= self.spec.horizon)


class BinsModel(AnalyticalModel):
    """x = bin utilisations after the agents act; x_ref = the capacity-proportional split."""

    action_kind = "discrete"

    @staticmethod
    def utilisation(actions: Tensor, sizes: Tensor, capacity: Tensor) -> Tensor:
        onehot = torch.nn.functional.one_hot(actions, capacity.numel()).to(sizes.dtype)
        return BinsModel.load_from_onehot(onehot, sizes) / capacity

    @staticmethod
    def load_from_onehot(onehot: Tensor, sizes: Tensor) -> Tensor:
        return torch.einsum("enm,en->em", onehot, sizes)

    def system_state(self, actions: Tensor, context: BinsContext) -> Tensor:
        return self.load_from_onehot(actions, context.sizes.to(actions.dtype)) / context.capacity

    def reference_state(self, context: BinsContext) -> Tensor:
        total = context.sizes.sum(1, keepdim=True)
        return (total / context.capacity.sum()).expand(-1, context.capacity.numel())


@register_domain
class BinsDomain(Domain):
    """Spread jobs over bins in proportion to capacity (a toy domain for tutorials and tests)."""

    name = "bins"
    description = "toy: spread jobs over heterogeneous bins (example domain)"
    settings_model = BinsSettings

    def make_env(self, num_envs: int) -> BinsEnv:
        return BinsEnv(num_envs, self.num_agents, self.settings)  # type: ignore[arg-type]

    def make_model(self) -> BinsModel:
        return BinsModel(num_actions=max(2, self.num_agents // self.settings.agents_per_bin))  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("runs/example-bins"))
    args = parser.parse_args()
    for algo in ("dgpg", "mappo"):
        cfg = RunConfig(domain="bins", algo=algo, agents=args.agents, episodes=args.episodes,
                        out=args.out / algo, eval={"test_scenarios": 8, "deterministic": False})
        result = run(cfg)
        print(f"{algo:>6}: best test reward {result.best_test_reward:.4f} "
              f"(episode {result.best_episode}), final {result.final_test_reward:.4f} -> {result.out}")


if __name__ == "__main__":
    main()
