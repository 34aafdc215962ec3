"""`CloudDomain`: plugs the cloud-scheduling environment, model and heuristics into guidedmarl."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from guidedmarl.analytical.layers import make_allocation_layer
from guidedmarl.domain import Domain, HeuristicPolicy
from guidedmarl.env import MultiAgentVecEnv, Step

from .env import CloudEnv
from .fleet import make_candidate_sets, make_fleet
from .heuristics import ClusterView, Heuristic
from .rules import HEURISTICS
from .model import CloudModel
from .settings import CloudSettings


class _CloudHeuristicPolicy:
    """Adapts a cloud :class:`Heuristic` to guidedmarl's ``HeuristicPolicy`` protocol."""

    def __init__(self, rule: Heuristic) -> None:
        self.rule = rule

    def reset(self, env: MultiAgentVecEnv, seed: int) -> None:
        self.rule.reset(env.num_envs, env.spec.num_agents, torch.Generator().manual_seed(seed))

    def __call__(self, env: MultiAgentVecEnv, step: Step) -> Tensor:
        assert isinstance(env, CloudEnv)
        return self.rule(ClusterView.of(env.sim, env.candidates), env.current_jobs())


class CloudDomain(Domain):
    """Heterogeneous cloud scheduling: job dispatchers as agents (the flagship domain)."""

    name = "cloud"
    description = "job dispatchers over heterogeneous cloud servers; reference = load-balancing QP"
    settings_model = CloudSettings
    plot_baselines = (
        "best_fit",
        "headroom_random_absolute",
        "headroom_random",
        "least_loaded",
        "best_fit_simultaneous",
        "random",
    )
    floor_heuristic = "random"
    target_heuristic = "best_fit"
    # the dispatchers decide at the same time from overlapping views of shared servers: a
    # greedy policy sends every agent that sees the same free server to it (the simultaneous
    # Best-Fit rule loses 10x to Best-Fit that way), a sampled one spreads them, as the
    # randomised fit-aware rules do (docs/results.md, "evaluation mode")
    greedy_evaluation = False
    default_algo = "dgpg_exact"  # the preset of every cloud study (docs/theory.md says why)
    devices = ("cpu", "cuda")  # every tensor is created on self.device (tests/test_device.py)

    def __init__(self, num_agents: int, settings: CloudSettings) -> None:  # type: ignore[override]
        super().__init__(num_agents, settings)
        self.settings: CloudSettings = settings
        m = settings.num_servers(num_agents)
        self.fleet = make_fleet(m, torch.Generator().manual_seed(settings.fleet_seed))
        k = min(settings.candidates, m)
        self.candidates = make_candidate_sets(
            num_agents, m, k, torch.Generator().manual_seed(settings.fleet_seed + 1)
        )

    def make_env(self, num_envs: int) -> CloudEnv:
        return CloudEnv(num_envs, self.fleet.to(self.device), self.candidates.to(self.device), self.settings)

    def memory_bytes(self, num_envs: int) -> int:
        """Scenario arrays (S steps x N agents x 17 bytes, twice while they are generated) and the
        simulator's job pool (measured: about 33 N job slots of 49 bytes per environment after an
        episode at N = 2000, doubled while it grows)."""
        steps = self.settings.warmup + self.settings.horizon
        return num_envs * self.num_agents * (steps * 17 * 2 + 33 * 49 * 2)

    def make_model(self) -> CloudModel:
        s = self.settings
        return CloudModel(
            num_candidates=self.candidates.shape[1],
            layer=make_allocation_layer(s.reference_layer),
            eta=s.reference_eta,
            max_utilisation=s.reference_max_utilisation,
            potential=s.potential,
            overload_penalty=s.overload_penalty,
            distance_weight=s.distance_weight,
            packing_weight=s.packing_weight,
            component_weights=self._component_weights(),
        )

    def _component_weights(self) -> Tensor | None:
        """``[2M]`` C_{k,r} / mean_k C_{k,r} in the state's server-major layout, or None (uniform)."""
        if self.settings.potential_weighting == "uniform":
            return None
        cap = torch.stack([self.fleet.cpu, self.fleet.mem], dim=-1).to(torch.float64)  # [M, 2]
        weights = (cap / cap.mean(dim=0, keepdim=True)).reshape(-1)
        return weights.to(dtype=torch.get_default_dtype(), device=self.device)

    def heuristics(self) -> dict[str, Callable[[], HeuristicPolicy]]:
        return {name: (lambda cls=cls: _CloudHeuristicPolicy(cls())) for name, cls in HEURISTICS.items()}
