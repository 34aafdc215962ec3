"""Deliberately imperfect analytical models, for the referee's stress test.

The method's guarantees assume the analytical model is right (aligned), its reference is
exogenous and its state map differentiable. These wrappers break one assumption at a time
around any :class:`AnalyticalModel`, so that one can measure what survives:

* :class:`BiasedReference`: x_ref + beta * spread * u, with spread the standard deviation of
  x_ref over its components (per environment) and u a fixed direction (all ones, or a fixed
  random vector with unit RMS drawn from a seed). beta = 0 is the exact model.
* :class:`NoisyReference`: x_ref + sigma * spread * eps_t, fresh standard normal noise eps_t
  at every call (seeded), still independent of the actions (exogenous but wrong).
* :class:`RoundedState`: the state map quantised to multiples of ``step``, Q(x) =
  step * round(x / step): piecewise constant, so its autograd derivative is zero almost
  everywhere. With a sparse closed-form influence in the inner model, z_i becomes the
  discrete difference Q(x) - Q(x - z_i) on agent i's components (what a simulator that
  reports rounded readings would give); without one, guidance is the (zero) autograd
  derivative.

``wrap_surrogate(model, config, seed)`` builds one from a :class:`SurrogateConfig`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel, SparseInfluence


class _Surrogate(AnalyticalModel):
    """Delegates everything to ``inner``; subclasses change one map."""

    def __init__(self, inner: AnalyticalModel) -> None:
        self.inner = inner
        self.action_kind = inner.action_kind  # type: ignore[misc]
        self.closed_form_influence = inner.closed_form_influence  # type: ignore[misc]
        self.component_weights = inner.component_weights
        super().__init__(num_actions=inner.num_actions)

    def potential_terms(self, x: Tensor, x_ref: Tensor) -> Tensor:
        return self.inner.potential_terms(x, x_ref)

    def potential_gradient(self, x: Tensor, x_ref: Tensor) -> Tensor:
        return self.inner.potential_gradient(x, x_ref)

    def potential_drop(self, x: Tensor, x_ref: Tensor, step: Tensor) -> Tensor:
        return self.inner.potential_drop(x, x_ref, step)

    def system_state(self, actions: Tensor, context: Any) -> Tensor:
        return self.inner.system_state(actions, context)

    def reference_state(self, context: Any) -> Tensor:
        return self.inner.reference_state(context)

    def influence(self, actions: Tensor, context: Any) -> SparseInfluence:
        return self.inner.influence(actions, context)


def _spread(x_ref: Tensor) -> Tensor:
    """Standard deviation of x_ref over its components, ``[E, 1]`` (floored at 1e-6)."""
    return x_ref.std(dim=-1, keepdim=True, unbiased=False).clamp_min(1e-6)


class BiasedReference(_Surrogate):
    """x_ref shifted by ``beta`` times its spread along a fixed direction."""

    def __init__(self, inner: AnalyticalModel, beta: float, direction: Literal["uniform", "random"], seed: int) -> None:
        super().__init__(inner)
        self.beta, self.direction = beta, direction
        self._seed = seed
        self._u: Tensor | None = None

    def _unit(self, dim: int, like: Tensor) -> Tensor:
        if self._u is None or self._u.numel() != dim:
            if self.direction == "uniform":
                u = torch.ones(dim, dtype=torch.float64)
            else:
                # a fresh generator from the seed: the direction is a function of (seed, dim) alone,
                # so a resumed run (which rebuilds the model) draws the same one
                u = torch.randn(dim, generator=torch.Generator().manual_seed(self._seed), dtype=torch.float64)
                u = u / u.square().mean().sqrt()
            self._u = u
        return self._u.to(like.dtype)

    def reference_state(self, context: Any) -> Tensor:
        x_ref = self.inner.reference_state(context)
        return x_ref + self.beta * _spread(x_ref) * self._unit(x_ref.shape[-1], x_ref)


class NoisyReference(_Surrogate):
    """x_ref plus fresh Gaussian noise of ``sigma`` times its spread at every call."""

    def __init__(self, inner: AnalyticalModel, sigma: float, seed: int) -> None:
        super().__init__(inner)
        self.sigma = sigma
        self._generator = torch.Generator().manual_seed(seed)

    def reference_state(self, context: Any) -> Tensor:
        x_ref = self.inner.reference_state(context)
        noise = torch.randn(x_ref.shape, generator=self._generator, dtype=x_ref.dtype)
        return x_ref + self.sigma * _spread(x_ref) * noise


class RoundedState(_Surrogate):
    """The state map quantised to multiples of ``step`` (non-differentiable)."""

    def __init__(self, inner: AnalyticalModel, step: float) -> None:
        super().__init__(inner)
        self.step = step

    def quantise(self, x: Tensor) -> Tensor:
        return torch.round(x / self.step) * self.step

    def system_state(self, actions: Tensor, context: Any) -> Tensor:
        return self.quantise(self.inner.system_state(actions, context))

    def influence(self, actions: Tensor, context: Any) -> SparseInfluence:
        if not self.inner.closed_form_influence:
            return super(_Surrogate, self).influence(actions, context)  # autograd: zero a.e.
        z = self.inner.influence(actions, context)
        x = self.inner.state(actions, context)
        e, n, k = z.index.shape
        before = x.gather(1, z.index.reshape(e, n * k)).reshape(e, n, k)
        return SparseInfluence(z.index, self.quantise(before) - self.quantise(before - z.value))


class BiasedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["biased"] = "biased"
    beta: float = Field(0.3, ge=0, le=100, description="shift in units of the reference's spread")
    direction: Literal["uniform", "random"] = "random"


class NoisyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["noisy"] = "noisy"
    sigma: float = Field(0.3, ge=0, le=100, description="noise std in units of the reference's spread")


class RoundedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["rounded"] = "rounded"
    step: float = Field(0.1, gt=0, le=100, description="quantisation step of the state, in state units")


SurrogateConfig = Annotated[Union[BiasedConfig, NoisyConfig, RoundedConfig], Field(discriminator="kind")]


def wrap_surrogate(model: AnalyticalModel, config: SurrogateConfig | None, seed: int) -> AnalyticalModel:
    """``model`` itself when ``config`` is None, else the configured surrogate around it."""
    if config is None:
        return model
    if isinstance(config, BiasedConfig):
        return BiasedReference(model, config.beta, config.direction, seed)
    if isinstance(config, NoisyConfig):
        return NoisyReference(model, config.sigma, seed)
    return RoundedState(model, config.step)
