"""`PowerDomain`: plugs the power dispatch environment, model and heuristics into guidedmarl.

N is fixed by the case: one agent per dispatchable generator (case30: 6, case118: 54,
pglib_opf_case9241_pegase: 1445). Leave ``--agents`` out to take the case's N; an explicit
``--agents`` must equal it (``resolve_agents`` raises a ConfigError naming the right number).
So ``guidedmarl run --domain power`` works with the default case, and
``--agents 54 --set domain_config.case=case118`` is checked.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from guidedmarl.config import ConfigError
from guidedmarl.domain import Domain, HeuristicPolicy, pooled_train_seeds

from .cases import CaseError, load_case
from .env import PowerEnv
from .heuristics import HEURISTICS
from .model import OverloadAwarePowerModel, PowerModel
from .reference import ScenarioBank
from .settings import PowerSettings
from .system import PowerSystem


class PowerDomain(Domain):
    """Economic dispatch on a transmission network: generators as agents."""

    name = "power"
    description = "generators dispatching a day of demand on an IEEE/PGLib network; reference = DC-OPF"
    settings_model = PowerSettings
    plot_baselines = ("reference", "merit_order", "proportional", "random")
    floor_heuristic = "random"
    target_heuristic = "reference"

    @classmethod
    def resolve_agents(cls, requested: int | None, settings: BaseModel) -> int:
        """The case's number of dispatchable generators; ``requested`` must be None or equal it."""
        assert isinstance(settings, PowerSettings)
        case = _load(settings.case)
        n = case.num_generators
        if requested is not None and requested != n:
            raise ConfigError(
                f"agents: case {case.name} has {n} dispatchable generators, so the power domain has N = {n} "
                f"agents; got --agents {requested} (pass --agents {n} or leave --agents out)"
            )
        return n

    def __init__(self, num_agents: int, settings: PowerSettings) -> None:  # type: ignore[override]
        case = _load(settings.case)
        n = self.resolve_agents(num_agents, settings)
        super().__init__(n, settings)
        self.settings: PowerSettings = settings
        self.system = PowerSystem(settings, case)
        self.bank = ScenarioBank(self.system)

    def make_env(self, num_envs: int) -> PowerEnv:
        return PowerEnv(num_envs, self.system, self.bank)

    def make_model(self) -> PowerModel:
        s = self.settings
        lines = self.system.network.ptdf_gen.shape[0]
        if s.overload_potential > 0:
            return OverloadAwarePowerModel(s.overload_potential, s.balance_weight, self.num_agents, lines, s.line_weight)
        return PowerModel(s.balance_weight, self.num_agents, lines, s.line_weight)

    def train_seeds(self, episode: int, num_envs: int, run_seed: int) -> list[int]:
        """Seeds from the pool 0 .. train_scenarios - 1, cycled (their references stay cached)."""
        return pooled_train_seeds(episode, num_envs, run_seed, self.settings.train_scenarios)

    def heuristics(self) -> dict[str, Callable[[], HeuristicPolicy]]:
        return dict(HEURISTICS)


def _load(name: str):  # noqa: ANN202 - the case type lives in .cases
    try:
        return load_case(name)
    except CaseError as exc:
        raise ConfigError(f"domain_config.case: {exc}") from None
