"""Advantage estimators: how the per-agent advantage fed to the PPO surrogate is formed.

A learner is a critic (:mod:`guidedmarl.training.critics`) plus an advantage estimator. An
estimator sees every rollout step (:meth:`AdvantageEstimator.on_step`, e.g. to compute the
guidance weights g from the analytical model) and, at the update, turns the raw GAE
advantages into the advantage of every agent and sample (:meth:`AdvantageEstimator.advantage`).

Shipped kinds:

* ``shared_return`` (MAPPO, IPPO, mean-field AC): the GAE advantage standardised over the
  active samples, (A - mean) / std, exactly as plain PPO does.
* ``dgpg`` (:class:`GuidedEstimator`): A_DG = (1 - alpha) * A_hat - alpha * g_hat, with g from
  :func:`guidedmarl.guidance.weights.guidance_weights` (first order, or the exact difference).

How g is scaled against A (a choice the paper leaves open; ours): g_hat is g centred and
scaled over the active samples like A_hat, (g - mean) / std, so both terms have unit spread
and alpha is a real mixing fraction whatever the units of x. Subtracting a constant from g
leaves E[g grad log pi] unchanged (E[grad log pi] = 0), so centring keeps the estimator
unbiased and removes its mean-shift variance. ``scaling = "scale"`` divides by the std without
centring; ``"none"`` uses raw g. With alpha = 0 the mixed advantage is *bit for bit* A_hat,
so DG-PG with alpha = 0 is MAPPO. The minus sign moves agents *down* the potential phi.

A new estimator is one :class:`EstimatorConfig` subclass and one :class:`AdvantageEstimator`
subclass, registered with :func:`register_estimator` (or the ``guidedmarl.estimators``
entry-point group); see docs/writing-an-estimator.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.analytical.surrogates import SurrogateConfig, wrap_surrogate
from guidedmarl.errors import ConfigError, GuidanceError, TrainingError
from guidedmarl.guidance.schedules import LinearAlpha, ScheduleConfig, checked_alpha
from guidedmarl.guidance.weights import guidance_weights
from guidedmarl.registry import Registry


def masked_standardize(values: Tensor, mask: Tensor, center: bool = True, eps: float = 1e-8) -> Tensor:
    """(values - mean) / std over entries where ``mask`` is true; masked-out entries become 0.

    Uses the unbiased std (as ``torch.std``), so a plain PPO run that standardises its
    advantage over all samples gives the same numbers when every sample is active.
    """
    m = mask.to(values.dtype)
    count = m.sum().clamp_min(1.0)
    mean = (values * m).sum() / count
    var = ((values - mean).square() * m).sum() / (count - 1.0).clamp_min(1.0)
    shifted = values - mean if center else values
    return shifted / (var.sqrt() + eps) * m


class EstimatorConfig(BaseModel):
    """Settings of an advantage estimator; subclasses fix ``kind`` with a ``Literal``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    kind: str


class StepInputs:
    """What an estimator sees at one rollout step (pre-action observation, chosen actions).

    Attributes:
        actions: ``[E, N]`` (discrete) or ``[E, N, action_dim]`` actions.
        mean_action: the policy means for continuous actions, else None.
        active: ``[E, N]`` bool, agents that acted.
    """

    def __init__(self, actions: Tensor, mean_action: Tensor | None, active: Tensor, context: Callable[[], Any]):
        self.actions, self.mean_action, self.active = actions, mean_action, active
        self._context = context

    def context(self) -> Any:
        """The environment's ``model_context()`` before this step's actions (computed once)."""
        return self._context()


class AdvantageEstimator(ABC):
    """Base class of advantage estimators (see the module docstring).

    Args:
        config: the validated settings (an instance of ``config_model``).
        model: the domain's analytical model, or None when the domain has none.
        seed: the run seed (for any randomness of the estimator, e.g. a noisy surrogate).
    """

    kind: ClassVar[str] = ""
    config_model: ClassVar[type[EstimatorConfig]] = EstimatorConfig
    needs_model: ClassVar[bool] = False

    def __init__(self, config: EstimatorConfig, model: AnalyticalModel | None, seed: int) -> None:
        if self.needs_model and model is None:
            raise ConfigError(f"estimator '{self.kind}' needs an analytical model, and the domain has none; "
                              "use a learner without one (--algo mappo, ippo or mfac) or give the domain a model")
        self.config, self.model, self.seed = config, model, seed

    def on_step(self, inputs: StepInputs) -> dict[str, Tensor]:
        """Per-step tensors ``[E, N]`` to store with the rollout (default: none)."""
        return {}

    @abstractmethod
    def advantage(self, advantage: Tensor, records: Mapping[str, Tensor], mask: Tensor, progress: float) -> Tensor:
        """Advantage of every sample, same shape as ``advantage`` (``[T, E, N]``).

        Args:
            advantage: raw GAE advantages, broadcast per agent.
            records: what :meth:`on_step` stored, stacked over time (``[T, E, N]`` each).
            mask: bool, samples where the agent acted (others must get 0).
            progress: training progress in [0, 1] (0 at the first update, 1 at the last).
        """

    def diagnostics(self, records: Mapping[str, Tensor], mask: Tensor, progress: float) -> dict[str, float]:
        """Scalars to log after each update (under ``guidance/`` when they concern g)."""
        return {}


class SharedReturnConfig(EstimatorConfig):
    """The shared-return advantage has no settings of its own."""

    kind: Literal["shared_return"] = "shared_return"


class SharedReturnEstimator(AdvantageEstimator):
    """MAPPO / IPPO: the standardised GAE advantage of the shared team reward."""

    kind = "shared_return"
    config_model = SharedReturnConfig

    def advantage(self, advantage: Tensor, records: Mapping[str, Tensor], mask: Tensor, progress: float) -> Tensor:
        return masked_standardize(advantage, mask)


class GuidedConfig(EstimatorConfig):
    """DG-PG: the PPO advantage mixed with the descent-guidance weight of the analytical model."""

    kind: Literal["dgpg"] = "dgpg"
    alpha: ScheduleConfig = Field(default_factory=LinearAlpha, description="alpha schedule over training progress")
    scaling: Literal["standardize", "scale", "none"] = Field(
        "standardize", description="how g is put on the scale of the standardised advantage"
    )
    weight: Literal["first_order", "exact_difference"] = Field(
        "first_order",
        description="first_order: the paper's g_i = <grad phi(x), z_i>; exact_difference: phi(x) - phi(x - z_i) "
        "(unbiased; docs/theory_tests.md)",
    )
    surrogate: SurrogateConfig | None = Field(
        None, description="replace the model by a biased, noisy or rounded surrogate (stress test)"
    )


class GuidedEstimator(AdvantageEstimator):
    """DG-PG's estimator: A_DG = (1 - alpha) A_hat - alpha g_hat (see the module docstring)."""

    kind = "dgpg"
    config_model = GuidedConfig
    needs_model = True

    def __init__(self, config: EstimatorConfig, model: AnalyticalModel | None, seed: int) -> None:
        super().__init__(config, model, seed)
        assert isinstance(config, GuidedConfig) and model is not None
        self.config: GuidedConfig = config
        self.model = wrap_surrogate(model, config.surrogate, seed)

    @property
    def exact_difference(self) -> bool:
        return self.config.weight == "exact_difference"

    def alpha(self, progress: float) -> float:
        """alpha at this point of training."""
        return checked_alpha(self.config.alpha, progress)

    def on_step(self, inputs: StepInputs) -> dict[str, Tensor]:
        assert self.model is not None
        g = guidance_weights(
            self.model, inputs.actions, inputs.context(), self.exact_difference, mean_action=inputs.mean_action
        )
        if g.shape != inputs.active.shape:
            raise GuidanceError(
                f"guidance weights have shape {tuple(g.shape)}, expected one weight per agent "
                f"{tuple(inputs.active.shape)} (vector actions need mean_action)"
            )
        if not bool(torch.isfinite(g).all()):
            raise GuidanceError(f"guidance weights g hold {int((~torch.isfinite(g)).sum())} NaN or infinite value(s)")
        return {"guidance": g * inputs.active}

    def scale_guidance(self, guidance: Tensor, mask: Tensor) -> Tensor:
        """g_hat: the guidance weights put on the advantage's scale."""
        if self.config.scaling == "none":
            return guidance * mask.to(guidance.dtype)
        return masked_standardize(guidance, mask, center=self.config.scaling == "standardize")

    def advantage(self, advantage: Tensor, records: Mapping[str, Tensor], mask: Tensor, progress: float) -> Tensor:
        a_hat = masked_standardize(advantage, mask)
        alpha = self.alpha(progress)
        if alpha == 0.0:
            return a_hat
        guidance = records.get("guidance")
        if guidance is None:
            raise TrainingError("DG-PG needs guidance weights, but the rollout recorded none")
        if guidance.shape != advantage.shape:
            raise TrainingError(f"guidance shape {tuple(guidance.shape)} != advantage shape {tuple(advantage.shape)}")
        return (1.0 - alpha) * a_hat - alpha * self.scale_guidance(guidance, mask)

    def diagnostics(self, records: Mapping[str, Tensor], mask: Tensor, progress: float) -> dict[str, float]:
        out = {"alpha": self.alpha(progress)}
        guidance = records.get("guidance")
        if guidance is not None:
            out["guidance_mean"] = float(guidance[mask].mean()) if mask.any() else 0.0
            out["guidance_std"] = float(guidance[mask].std()) if int(mask.sum()) > 1 else 0.0
        return out


def _check_estimator(cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, AdvantageEstimator)):
        raise TypeError(f"register_estimator expects a subclass of AdvantageEstimator, got {cls!r}")


ESTIMATORS: Registry[type[AdvantageEstimator]] = Registry("estimator", "guidedmarl.estimators", _check_estimator)


def register_estimator(
    cls: type[AdvantageEstimator], name: str | None = None, *, replace: bool = False
) -> type[AdvantageEstimator]:
    """Register an estimator class under ``name`` (default ``cls.kind``); usable as a decorator."""
    return ESTIMATORS.register(cls, name or cls.kind, replace=replace)


register_estimator(SharedReturnEstimator)
register_estimator(GuidedEstimator)

