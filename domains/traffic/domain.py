"""`TrafficDomain`: plugs the route-choice environment, model and heuristics into guidedmarl.

``guidedmarl run --domain traffic`` trains N = 1000 packets on Sioux Falls (528 OD pairs);
``--set domain_config.network=braess|siouxfalls|anaheim`` changes the network and ``--agents N``
the number of packets (docs/domains/traffic.md).
"""

from __future__ import annotations

from collections.abc import Callable

from guidedmarl.config import ConfigError
from guidedmarl.domain import Domain, HeuristicPolicy, pooled_train_seeds

from .env import TrafficEnv
from .heuristics import HEURISTICS
from .model import TrafficModel
from .network import NetworkError
from .reference import ScenarioBank
from .settings import TrafficSettings
from .system import TrafficSystem


class TrafficDomain(Domain):
    """Route choice on a road network: demand packets as agents, the system optimum as reference."""

    name = "traffic"
    description = "demand packets choosing routes on TNTP road networks; reference = system-optimal assignment"
    settings_model = TrafficSettings
    plot_baselines = ("system_optimum", "user_equilibrium", "day_to_day", "free_flow", "random")
    floor_heuristic = "random"
    target_heuristic = "system_optimum"
    default_agents = 1000
    default_algo = "dgpg_exact"  # the preset of the traffic studies (docs/domains/traffic.md)

    def __init__(self, num_agents: int, settings: TrafficSettings) -> None:  # type: ignore[override]
        super().__init__(num_agents, settings)
        self.settings: TrafficSettings = settings
        try:
            self.system = TrafficSystem(settings, num_agents)
        except NetworkError as exc:
            raise ConfigError(f"domain_config.network: {exc}") from None
        self.bank = ScenarioBank(self.system)

    def make_env(self, num_envs: int) -> TrafficEnv:
        return TrafficEnv(num_envs, self.system, self.bank)

    def make_model(self) -> TrafficModel:
        return TrafficModel(self.system, self.settings.potential, self.settings.cost_weight)

    def train_seeds(self, episode: int, num_envs: int, run_seed: int) -> list[int]:
        """Seeds from the pool 0 .. train_scenarios - 1, cycled (their references stay cached)."""
        return pooled_train_seeds(episode, num_envs, run_seed, self.settings.train_scenarios)

    def heuristics(self) -> dict[str, Callable[[], HeuristicPolicy]]:
        return dict(HEURISTICS)
