"""`Domain`: what a problem package provides, and the registry that finds domains.

A domain bundles an environment (:class:`~guidedmarl.env.MultiAgentVecEnv`), its analytical
model (:class:`~guidedmarl.analytical.AnalyticalModel`) and heuristic baselines, with a
pydantic model for its settings. Domains are found in two ways:

* ``register_domain(MyDomain)`` in Python (e.g. in a notebook or a test);
* the entry-point group ``guidedmarl.domains`` of any installed package, e.g. in its
  ``pyproject.toml``::

      [project.entry-points."guidedmarl.domains"]
      mydomain = "my_package.domain:MyDomain"

The core never imports a domain package; it only loads what the entry points name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.config import ConfigError, format_validation_error
from guidedmarl.env import MultiAgentVecEnv, Step

ENTRY_POINT_GROUP = "guidedmarl.domains"
TEST_SEED_BASE = 2**31 - 2**20
"""Held-out scenarios use seeds from here up; training seeds stay below."""


class NoSettings(BaseModel):
    """Settings model of a domain that has none."""

    model_config = ConfigDict(extra="forbid")


class HeuristicPolicy(Protocol):
    """A fixed dispatch rule evaluated beside the learners (e.g. Best-Fit).

    ``reset`` is called at every episode start with the environment and a seed for any
    randomness; ``__call__`` returns the actions for the current step.
    """

    def reset(self, env: MultiAgentVecEnv, seed: int) -> None: ...

    def __call__(self, env: MultiAgentVecEnv, step: Step) -> Tensor: ...


class Domain(ABC):
    """Base class of a pluggable problem domain.

    Class attributes:
        name: registry key (``guidedmarl run --domain NAME``).
        description: one line for ``guidedmarl domains``.
        settings_model: pydantic model validating ``RunConfig.domain_config``.
        plot_baselines: heuristics drawn as horizontal lines on learning curves.
        default_agents: N when a run does not give one (``RunConfig.agents`` None). A
            domain whose data fixes N (a power case) overrides ``resolve_agents`` instead.

    Args:
        num_agents: N.
        settings: the domain's validated settings (an instance of ``settings_model``).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings_model: ClassVar[type[BaseModel]] = NoSettings
    plot_baselines: ClassVar[tuple[str, ...]] = ()
    default_agents: ClassVar[int] = 50

    def __init__(self, num_agents: int, settings: BaseModel) -> None:
        if num_agents < 1:
            raise ValueError(f"num_agents must be >= 1, got {num_agents}")
        self.num_agents = num_agents
        self.settings = settings

    @classmethod
    def resolve_agents(cls, requested: int | None, settings: BaseModel) -> int:
        """N for a run that asked for ``requested`` agents (None: not given).

        The default gives ``default_agents`` for None and accepts any N >= 1; override it
        where the data fixes N, raising a :class:`ConfigError` that names the valid value.
        """
        return cls.default_agents if requested is None else requested

    @classmethod
    def from_config(cls, num_agents: int | None, domain_config: dict[str, Any]) -> Domain:
        """Validate ``domain_config`` with ``settings_model`` and build the domain with
        ``resolve_agents(num_agents)`` agents (``num_agents`` None: the domain's default)."""
        try:
            settings = cls.settings_model.model_validate(domain_config)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"domain_config for domain '{cls.name}'")) from None
        return cls(cls.resolve_agents(num_agents, settings), settings)

    @abstractmethod
    def make_env(self, num_envs: int) -> MultiAgentVecEnv:
        """A batch of ``num_envs`` environments with ``num_agents`` agents each."""

    @abstractmethod
    def make_model(self) -> AnalyticalModel:
        """The analytical model whose guidance DG-PG uses."""

    def train_seeds(self, episode: int, num_envs: int, run_seed: int) -> list[int]:
        """Scenario seeds of one training episode; disjoint from ``test_seeds``."""
        base = (run_seed * 1_000_003 + episode * 4099) % (TEST_SEED_BASE - num_envs)
        return [base + k for k in range(num_envs)]

    def test_seeds(self, count: int) -> list[int]:
        """The fixed held-out scenarios (the same for every run, algorithm and seed)."""
        return [TEST_SEED_BASE + k for k in range(count)]

    def heuristics(self) -> dict[str, Callable[[], HeuristicPolicy]]:
        """Named factories of heuristic baselines (empty if the domain has none)."""
        return {}


_REGISTRY: dict[str, type[Domain]] = {}


def register_domain(cls: type[Domain], name: str | None = None, *, replace: bool = False) -> type[Domain]:
    """Add a domain class to the registry (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Domain)):
        raise TypeError(f"register_domain expects a subclass of guidedmarl.Domain, got {cls!r}")
    key = name or cls.name
    if not key:
        raise ValueError(f"{cls.__name__} has no name: set the class attribute `name` or pass name=")
    if key in _REGISTRY and _REGISTRY[key] is not cls and not replace:
        raise ValueError(f"a domain named '{key}' is already registered ({_REGISTRY[key].__module__})")
    _REGISTRY[key] = cls
    return cls


def _entry_point_names() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_domain(name: str) -> type[Domain]:
    """The domain class registered under ``name`` (loading its entry point if needed)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    eps = _entry_point_names()
    if name not in eps:
        known = ", ".join(sorted(set(_REGISTRY) | set(eps))) or "(none)"
        raise ConfigError(f"unknown domain '{name}'; available domains: {known}")
    try:
        cls = eps[name].load()
    except Exception as exc:  # an installed plug-in that fails to import
        raise ConfigError(f"domain '{name}' ({eps[name].value}) failed to load: {exc!r}") from exc
    return register_domain(cls, name)


def available_domains() -> dict[str, str]:
    """Registered and installed domains with their one-line descriptions."""
    out: dict[str, str] = {}
    for name in sorted(set(_REGISTRY) | set(_entry_point_names())):
        try:
            out[name] = get_domain(name).description
        except ConfigError as exc:
            out[name] = f"(broken: {exc})"
    return out
