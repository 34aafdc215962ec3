"""Small exact analytical models and helpers for property tests of guidance.

The project's theory tests (``tests/theory``) use them, and so can tests of a new domain:
on these models every expectation can be computed exactly (enumeration of joint discrete
actions, Gaussian quadrature), so an estimator can be checked against the truth.

* :class:`AffineDiscreteModel`: x = x0 + sum_i C_i[a_i] for discrete actions (the method's
  discrete case: z_i = C_i[a_i] is the state change of the chosen option).
* :class:`LinearContinuousModel`: x = x0 + sum_i B_i a_i for continuous actions ``[E, N, k]``.
* :func:`default_dtype`: run a block with another torch default dtype (float64 for exact
  checks; :meth:`AnalyticalModel.relax` builds one-hots in the default dtype).
* :func:`check_domain` (from :mod:`guidedmarl.checks`): a domain's self-test of the contract
  (environment, analytical model, guidance weights, alignment figure), e.g. in its own tests::

      check_domain(MyDomain.from_config(6, {"horizon": 5})).raise_if_failed()
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.checks import CheckReport, CheckResult, check_domain, random_actions

__all__ = [
    "AffineContext",
    "AffineDiscreteModel",
    "CheckReport",
    "CheckResult",
    "LinearContext",
    "LinearContinuousModel",
    "check_domain",
    "default_dtype",
    "random_actions",
]


@contextmanager
def default_dtype(dtype: torch.dtype = torch.float64) -> Iterator[None]:
    """Temporarily set torch's default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@dataclass
class AffineContext:
    """Context of :class:`AffineDiscreteModel`.

    Attributes:
        x0: ``[D]`` state when no agent acts.
        effect: ``[N, A, D]`` C_i[a], the state change of agent i's option a.
        x_ref: ``[D]`` reference (exogenous unless a test makes it otherwise).
        num_envs: E, the batch size the reference is expanded to.
    """

    x0: Tensor
    effect: Tensor
    x_ref: Tensor
    num_envs: int = 1

    def for_envs(self, num_envs: int) -> AffineContext:
        """The same context for a batch of ``num_envs`` environments."""
        return dataclasses.replace(self, num_envs=num_envs)


class AffineDiscreteModel(AnalyticalModel):
    """x = x0 + sum_i C_i[a_i], written on the float one-hot ``[E, N, A]`` (affine in each row)."""

    action_kind = "discrete"

    def system_state(self, actions: Tensor, context: AffineContext) -> Tensor:
        return context.x0 + torch.einsum("ena,nad->ed", actions, context.effect.to(actions.dtype))

    def reference_state(self, context: AffineContext) -> Tensor:
        return context.x_ref.expand(context.num_envs, -1)


@dataclass
class LinearContext:
    """Context of :class:`LinearContinuousModel`: x0 ``[D]``, B ``[N, D, k]``, x_ref ``[D]``."""

    x0: Tensor
    B: Tensor
    x_ref: Tensor


class LinearContinuousModel(AnalyticalModel):
    """x = x0 + sum_i B_i a_i on continuous actions ``[E, N, k]``."""

    action_kind = "continuous"

    def system_state(self, actions: Tensor, context: LinearContext) -> Tensor:
        return context.x0 + torch.einsum("enk,ndk->ed", actions, context.B.to(actions.dtype))

    def reference_state(self, context: LinearContext) -> Tensor:
        return context.x_ref.unsqueeze(0)


def all_joint_actions(num_agents: int, num_actions: int) -> Tensor:
    """Every joint discrete action, ``[A^N, N]`` long: one environment per joint action, so an
    expectation under independent policies is an exact weighted sum (small N and A only)."""
    grid = torch.cartesian_prod(*[torch.arange(num_actions)] * num_agents)
    return grid.reshape(-1, num_agents)


def softmax_score(theta: Tensor, actions: Tensor) -> Tensor:
    """grad_{theta_i} log softmax(theta_i)[a_i] for every joint action and agent, ``[E, N, A]``."""
    pi = torch.softmax(theta, -1)
    return torch.nn.functional.one_hot(actions, pi.shape[1]).to(pi.dtype) - pi


def joint_probability(theta: Tensor, actions: Tensor) -> Tensor:
    """p(a) = prod_i softmax(theta_i)[a_i] for every joint action, ``[E]``."""
    return torch.log_softmax(theta, -1).gather(1, actions.T).sum(0).exp()
