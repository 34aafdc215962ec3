"""Critics: the value baseline of a learner, as plug-ins (a config model plus a class, by ``kind``).

A critic sees, for every rollout step, the step's global ``state`` ``[E, state_dim]`` and
observations ``obs`` ``[E, N, obs_dim]``, plus whatever extra inputs it asks for in
:meth:`Critic.extra_inputs` (computed once per step from the chosen actions and stored with
the rollout, so the update sees the same inputs). It returns one value per environment
(``per_agent = False``: a centralised critic, as in MAPPO) or one per agent (``per_agent =
True``: IPPO's local critic, the mean-field critic), in normalised-return units.

Shipped kinds:

* ``central``: V(s), MAPPO's centralised critic (also DG-PG's).
* ``local``: V_i(o_i), IPPO's independent critic.
* ``mean_field``: V_i(o_i, abar_i), with abar_i the *mean field* of agent i: what the other
  agents chose this step, summarised by the environment (:meth:`MultiAgentVecEnv.mean_field`,
  by default the mean one-hot action of the other active agents). This is the mean-field
  actor-critic of Yang et al. (2018) in PPO form. The baseline does not depend on agent i's
  own action, so it leaves agent i's policy gradient unbiased.

A new critic is one :class:`CriticConfig` subclass and one :class:`Critic` subclass,
registered with :func:`register_critic` (or the ``guidedmarl.critics`` entry-point group).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar, Literal

import torch

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from guidedmarl.env import EnvSpec, MultiAgentVecEnv, Step
from guidedmarl.errors import ConfigError
from guidedmarl.registry import Registry
from guidedmarl.training.networks import AgentMLP


class CriticConfig(BaseModel):
    """Settings of a critic; subclasses add fields and fix ``kind`` with a ``Literal``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    kind: str


class Critic(nn.Module, ABC):
    """Base class of critics (see the module docstring).

    Args:
        spec: the environment's spec (sizes).
        config: the critic's validated settings.
        hidden: hidden-layer widths (``ppo.hidden``, shared with the actor).
        shared: one network for all agents (``ppo.shared_parameters``), per-agent critics only.
    """

    kind: ClassVar[str] = ""
    config_model: ClassVar[type[CriticConfig]] = CriticConfig
    per_agent: ClassVar[bool] = False

    def __init__(self, spec: EnvSpec, config: CriticConfig, hidden: list[int], shared: bool) -> None:
        super().__init__()
        self.spec, self.config = spec, config

    def extra_inputs(self, step: Step, actions: Tensor, env: MultiAgentVecEnv) -> dict[str, Tensor]:
        """Inputs beyond ``state`` and ``obs`` to store for this step, ``[E, ...]`` each."""
        return {}

    @abstractmethod
    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Values ``[B]`` (per environment) or ``[B, N]`` (per agent) for a batch of steps."""


class CentralCritic(Critic):
    """MAPPO critic V(s): one value per environment from the global state."""

    kind = "central"

    def __init__(self, spec: EnvSpec, config: CriticConfig, hidden: list[int], shared: bool) -> None:
        super().__init__(spec, config, hidden, shared)
        self.net = AgentMLP(1, spec.state_dim, hidden, 1, shared=True, out_gain=1.0)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.net(inputs["state"]).squeeze(-1)


class LocalCritic(Critic):
    """IPPO critic V_i(o_i): one value per agent from its own observation."""

    kind = "local"
    per_agent = True

    def __init__(self, spec: EnvSpec, config: CriticConfig, hidden: list[int], shared: bool) -> None:
        super().__init__(spec, config, hidden, shared)
        self.net = AgentMLP(spec.num_agents, spec.obs_dim, hidden, 1, shared, out_gain=1.0)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.net(inputs["obs"]).squeeze(-1)


class MeanFieldCritic(Critic):
    """V_i(o_i, abar_i): the agent's observation plus the mean field of the others' actions."""

    kind = "mean_field"
    per_agent = True

    def __init__(self, spec: EnvSpec, config: CriticConfig, hidden: list[int], shared: bool) -> None:
        super().__init__(spec, config, hidden, shared)
        if spec.mean_field_dim < 1:
            raise ConfigError(
                f"learner.critic: the mean_field critic needs an environment whose spec has mean_field_dim >= 1, "
                f"got {spec.mean_field_dim}"
            )
        self.net = AgentMLP(spec.num_agents, spec.obs_dim + spec.mean_field_dim, hidden, 1, shared, out_gain=1.0)

    def extra_inputs(self, step: Step, actions: Tensor, env: MultiAgentVecEnv) -> dict[str, Tensor]:
        return {"mean_field": env.mean_field(actions, step.active)}

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        obs = inputs["obs"]
        return self.net(torch.cat([obs, inputs["mean_field"].to(obs.dtype)], dim=-1)).squeeze(-1)


class CentralConfig(CriticConfig):
    """The centralised critic has no settings of its own."""

    kind: Literal["central"] = "central"


class LocalConfig(CriticConfig):
    """The local (independent) critic: each agent values its own observation."""

    kind: Literal["local"] = "local"
    reward: Literal["own", "team"] = Field(
        "own",
        description="the return each agent learns: 'own' (its own reward where the environment gives one, "
        "Step.agent_reward, as IPPO does; else the team reward) or 'team'",
    )


class MeanFieldConfig(CriticConfig):
    """The mean-field critic has no settings of its own (the environment defines the field)."""

    kind: Literal["mean_field"] = "mean_field"


def _check_critic(cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Critic)):
        raise TypeError(f"register_critic expects a subclass of guidedmarl.training.critics.Critic, got {cls!r}")


CRITICS: Registry[type[Critic]] = Registry("critic", "guidedmarl.critics", _check_critic)


def register_critic(cls: type[Critic], name: str | None = None, *, replace: bool = False) -> type[Critic]:
    """Register a critic class under ``name`` (default ``cls.kind``); usable as a decorator."""
    return CRITICS.register(cls, name or cls.kind, replace=replace)


CentralCritic.config_model = CentralConfig
LocalCritic.config_model = LocalConfig
MeanFieldCritic.config_model = MeanFieldConfig
for _cls in (CentralCritic, LocalCritic, MeanFieldCritic):
    register_critic(_cls)
