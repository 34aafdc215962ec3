"""`Domain`: what a problem package provides, and the registry that finds domains.

A domain bundles an environment (:class:`~guidedmarl.env.MultiAgentVecEnv`), its analytical
model (:class:`~guidedmarl.analytical.AnalyticalModel`) and heuristic baselines, with a
pydantic model for its settings. Domains are found in two ways:

* ``register_domain(MyDomain)`` in Python (e.g. in a notebook or a test);
* the entry-point group ``guidedmarl.domains`` of any installed package, e.g. in its
  ``pyproject.toml``::

      [project.entry-points."guidedmarl.domains"]
      mydomain = "my_package.domain:MyDomain"

* a reference to a class that is not installed: ``my_module:MyDomain`` (an importable
  module) or ``path/to/file.py:MyDomain``, e.g. ``guidedmarl run --domain ./mine.py:MyDomain``.

The core never imports a domain package; it only loads what the entry points name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.config import format_validation_error
from guidedmarl.device import resolve_device
from guidedmarl.env import MultiAgentVecEnv, Step
from guidedmarl.errors import ConfigError
from guidedmarl.registry import Registry, load_module

ENTRY_POINT_GROUP = "guidedmarl.domains"
TEST_SEED_BASE = 2**31 - 2**20
"""Held-out test scenarios use seeds from here up; training seeds stay below."""
VALIDATION_SEED_BASE = TEST_SEED_BASE + 2**19
"""Validation scenarios (checkpoint selection) use seeds from here up: apart from training and test."""
FRESH_SEED_BASE = VALIDATION_SEED_BASE + 2**18
"""Fresh evaluation scenarios (``guidedmarl evaluate --seed S``) use seeds from here up to 2**31."""


class NoSettings(BaseModel):
    """Settings model of a domain that has none."""

    model_config = ConfigDict(extra="forbid")


def pooled_train_seeds(episode: int, num_envs: int, run_seed: int, pool: int) -> list[int]:
    """Training seeds cycled through a fixed pool 0 .. pool - 1 (a domain whose scenarios carry a
    costly exogenous reference solves and caches each pool scenario once).

    Episode e of run seed s uses ``num_envs`` consecutive pool entries from
    ``(7919 s + e num_envs) mod pool``: different run seeds start at different places.
    """
    if pool < 1:
        raise ValueError(f"the training-scenario pool must hold at least 1 scenario, got {pool}")
    start = (run_seed * 7919 + episode * num_envs) % pool
    seeds = [(start + k) % pool for k in range(num_envs)]
    assert max(seeds) < TEST_SEED_BASE
    return seeds


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
        floor_heuristic: the heuristic that marks "no learning" (e.g. a random rule): the
            floor of the convergence criterion and of normalised scores. None: no floor.
        target_heuristic: the heuristic a learner should reach (e.g. a strong greedy rule):
            the target of the convergence criterion. None: no target.
        greedy_evaluation: the evaluation mode when ``eval.deterministic`` is not set: True
            evaluates the most likely action, False samples from the policy. A domain whose
            agents decide at the same time over shared resources may prefer sampling: a
            deterministic policy sends agents with the same view to the same option.
        default_agents: N when a run does not give one (``RunConfig.agents`` None). A
            domain whose data fixes N (a power case) overrides ``resolve_agents`` instead.
        default_algo: the learner preset a run trains when it names none (``--algo``); the
            default is ``"dgpg"``, the paper's first-order weight.
        devices: the device types ``make_env`` and ``make_model`` can build on. The default
            is ``("cpu",)``; a domain that creates every tensor on ``self.device`` (set by
            :meth:`from_config` from ``RunConfig.device``) declares ``("cpu", "cuda")``.

    Args:
        num_agents: N.
        settings: the domain's validated settings (an instance of ``settings_model``).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings_model: ClassVar[type[BaseModel]] = NoSettings
    plot_baselines: ClassVar[tuple[str, ...]] = ()
    floor_heuristic: ClassVar[str | None] = None
    target_heuristic: ClassVar[str | None] = None
    greedy_evaluation: ClassVar[bool] = True
    default_agents: ClassVar[int] = 50
    default_algo: ClassVar[str] = "dgpg"
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    device: torch.device = torch.device("cpu")
    """Where this domain's environments and model live (set by :meth:`from_config`)."""

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
    def from_config(cls, num_agents: int | None, domain_config: dict[str, Any], device: str = "cpu") -> Domain:
        """Validate ``domain_config`` with ``settings_model`` and build the domain with
        ``resolve_agents(num_agents)`` agents (``num_agents`` None: the domain's default) on
        ``device`` (a :class:`ConfigError` if the domain or the machine cannot use it)."""
        where = resolve_device(device, cls.devices, f"domain '{cls.name}'")
        try:
            settings = cls.settings_model.model_validate(domain_config)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"domain_config for domain '{cls.name}'", cls.settings_model)) from None
        domain = cls(cls.resolve_agents(num_agents, settings), settings)
        domain.device = where
        return domain

    @abstractmethod
    def make_env(self, num_envs: int) -> MultiAgentVecEnv:
        """A batch of ``num_envs`` environments with ``num_agents`` agents each."""

    def make_model(self) -> AnalyticalModel | None:
        """The analytical model whose guidance DG-PG uses (None: the domain has none, and
        only learners that need no model can run on it)."""
        return None

    def memory_bytes(self, num_envs: int) -> int:
        """Bytes a batch of ``num_envs`` environments holds at its peak (scenario data, simulator
        state), for the memory check before a run starts (:mod:`guidedmarl.memory`); 0: not said."""
        return 0

    def train_seeds(self, episode: int, num_envs: int, run_seed: int) -> list[int]:
        """Scenario seeds of one training episode; disjoint from ``test_seeds``."""
        base = (run_seed * 1_000_003 + episode * 4099) % (TEST_SEED_BASE - num_envs)
        return [base + k for k in range(num_envs)]

    def test_seeds(self, count: int) -> list[int]:
        """The fixed held-out test scenarios (the same for every run, algorithm and seed)."""
        return [TEST_SEED_BASE + k for k in range(count)]

    def validation_seeds(self, count: int) -> list[int]:
        """The fixed validation scenarios, on which checkpoints are chosen (never the test ones)."""
        return [VALIDATION_SEED_BASE + k for k in range(count)]

    def fresh_seeds(self, count: int, seed: int) -> list[int]:
        """``count`` scenarios drawn with ``seed``, never training, validation or test ones.

        For scoring a checkpoint on scenarios no run has seen (``guidedmarl evaluate --seed``);
        another ``seed`` draws other scenarios.
        """
        rng = np.random.default_rng(seed)
        return [FRESH_SEED_BASE + int(k) for k in rng.choice(2**31 - FRESH_SEED_BASE, size=count, replace=False)]

    def heuristics(self) -> dict[str, Callable[[], HeuristicPolicy]]:
        """Named factories of heuristic baselines (empty if the domain has none)."""
        return {}


def _check_domain_class(cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Domain)):
        raise TypeError(f"register_domain expects a subclass of guidedmarl.Domain, got {cls!r}")


DOMAINS: Registry[type[Domain]] = Registry("domain", ENTRY_POINT_GROUP, _check_domain_class)


def register_domain(cls: type[Domain], name: str | None = None, *, replace: bool = False) -> type[Domain]:
    """Add a domain class to the registry (usable as a decorator)."""
    _check_domain_class(cls)
    key = name or cls.name
    if not key:
        raise ValueError(f"{cls.__name__} has no name: set the class attribute `name` or pass name=")
    return DOMAINS.register(cls, key, replace=replace)


def _load_reference(ref: str) -> type[Domain]:
    """``module:Class`` or ``path/to/file.py:Class`` -> the class (not registered)."""
    target, _, attr = ref.rpartition(":")
    try:
        module = load_module(target)
    except ConfigError as exc:
        raise ConfigError(f"domain '{ref}': {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"domain '{ref}': {target} has no attribute '{attr}'")
    if not (isinstance(cls, type) and issubclass(cls, Domain)):
        raise ConfigError(f"domain '{ref}': {attr} is not a subclass of guidedmarl.Domain")
    return cls


def get_domain(name: str) -> type[Domain]:
    """The domain class called ``name``: registered, installed, ``pettingzoo:MODULE`` (a PettingZoo
    environment, :mod:`guidedmarl.adapters.from_pettingzoo`), or ``module:Class`` / ``file.py:Class``."""
    if name.startswith("pettingzoo:"):
        from guidedmarl.adapters.from_pettingzoo import domain_for

        return domain_for(name.removeprefix("pettingzoo:"))
    if ":" in name and name not in DOMAINS:
        return _load_reference(name)
    return DOMAINS.get(name)


def available_domains() -> dict[str, str]:
    """Registered and installed domains with their one-line descriptions."""
    out: dict[str, str] = {}
    for name in DOMAINS.names():
        try:
            out[name] = get_domain(name).description
        except ConfigError as exc:
            out[name] = f"(broken: {exc})"
    return out
