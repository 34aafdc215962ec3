"""`AnalyticalModel`: the differentiable model of a system that supplies descent guidance.

A domain describes its system through three maps, all batched over ``[E, N]``:

* ``system_state(actions, context) -> x``: the system state after the agents act, ``[E, D]``.
  It must be differentiable in the actions. Discrete actions arrive as a float one-hot
  tensor ``[E, N, A]``; the map must be affine in each agent's one-hot row (every agent's
  chosen option *adds* its contribution to x), so that the derivative with respect to the
  chosen entry is exactly the state change that option causes.
* ``reference_state(context) -> x_ref``: the efficient state prescribed by the model,
  computed from exogenous quantities only (capacities, total demand, network data). It is
  evaluated under ``torch.no_grad``: no gradient flows from the reference into a policy.
* ``influence(actions, context) -> SparseInfluence`` (optional override): the local
  influence z_i = dx/da_i in sparse form, for domains where each agent touches few
  components of x. The generic implementation builds a dense autograd Jacobian and is
  meant for small problems and for checking closed forms.

From these the guidance weight of agent i is g_i = <x - x_ref, z_i> (method note, eq. for
g_t^i). The generic path computes all g_i with one vector-Jacobian product: with
v = x - x_ref, ``g = (dx/da)^T v``, so its cost is that of one backward pass through
``system_state`` whatever N is; no Jacobian is ever materialised.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor


class GuidanceError(RuntimeError):
    """Raised when an analytical model produces unusable values (NaN, wrong shape...)."""


@dataclass
class SparseInfluence:
    """z_i = dx/da_i stored as (component index, value) pairs per agent.

    Attributes:
        index: ``[E, N, K]`` long, the components of x agent i changes.
        value: ``[E, N, K]`` (scalar actions) or ``[E, N, K, action_dim]``, dx[index]/da_i.
    """

    index: Tensor
    value: Tensor

    def dot(self, v: Tensor) -> Tensor:
        """<v, z_i> for every agent: ``[E, D] -> [E, N]`` (or ``[E, N, action_dim]``)."""
        e, n, k = self.index.shape
        picked = v.gather(1, self.index.reshape(e, n * k)).reshape(e, n, k)
        if self.value.dim() == 4:
            picked = picked.unsqueeze(-1)
        return (picked * self.value).sum(dim=2)

    def squared_norm(self) -> Tensor:
        """||z_i||^2 per agent, ``[E, N]`` (summed over action dimensions if any).

        Assumes every component appears at most once in an agent's index list.
        """
        sq = self.value.square().sum(dim=2)
        return sq.sum(-1) if sq.dim() == 3 else sq

    def dense(self, dim: int) -> Tensor:
        """Materialise z as ``[E, N, D]`` (or ``[E, N, D, action_dim]``); for tests only."""
        e, n, _ = self.index.shape
        shape = (e, n, dim, *self.value.shape[3:])
        out = torch.zeros(shape, dtype=self.value.dtype, device=self.value.device)
        idx = self.index
        if self.value.dim() == 4:
            idx = idx.unsqueeze(-1).expand_as(self.value)
        return out.scatter_add_(2, idx, self.value)


class AnalyticalModel(ABC):
    """Base class for the analytical model of a domain (see the module docstring).

    Subclasses set ``action_kind`` and implement ``system_state`` and ``reference_state``;
    they may override ``influence`` with a closed form and set ``closed_form_influence``
    so that ``guidance`` uses it instead of autograd.
    """

    action_kind: ClassVar[Literal["discrete", "continuous"]] = "discrete"
    closed_form_influence: ClassVar[bool] = False

    def __init__(self, num_actions: int = 0) -> None:
        if self.action_kind == "discrete" and num_actions < 1:
            raise ValueError("a discrete AnalyticalModel needs num_actions >= 1")
        self.num_actions = num_actions

    # ----------------------------------------------------------------- to implement
    @abstractmethod
    def system_state(self, actions: Tensor, context: Any) -> Tensor:
        """Post-action system state x, ``[E, D]``, differentiable in ``actions``."""

    @abstractmethod
    def reference_state(self, context: Any) -> Tensor:
        """Reference (efficient) state x_ref, ``[E, D]``, from exogenous quantities only."""

    # ----------------------------------------------------------------- provided
    def relax(self, actions: Tensor) -> Tensor:
        """Actions as the float tensor ``system_state`` differentiates: one-hot if discrete."""
        if self.action_kind == "discrete":
            if actions.dtype not in (torch.int64, torch.int32):
                raise GuidanceError(f"discrete actions must be integer, got {actions.dtype}")
            return torch.nn.functional.one_hot(actions.long(), self.num_actions).to(torch.get_default_dtype())
        return actions.to(torch.get_default_dtype())

    def state(self, actions: Tensor, context: Any) -> Tensor:
        """x for integer (discrete) or float (continuous) actions, checked for NaN."""
        x = self.system_state(self.relax(actions), context)
        return self._checked(x, "system_state")

    def reference(self, context: Any) -> Tensor:
        """x_ref under ``torch.no_grad`` (exogenous), checked for NaN."""
        with torch.no_grad():
            x_ref = self.reference_state(context)
        return self._checked(x_ref.detach(), "reference_state")

    def distance(self, x: Tensor, x_ref: Tensor) -> Tensor:
        """d(x, x_ref) = 1/2 ||x - x_ref||^2 per environment, ``[E]``."""
        return 0.5 * (x - x_ref).square().sum(dim=-1)

    def influence(self, actions: Tensor, context: Any) -> SparseInfluence:
        """z_i = dx/da_i from a dense autograd Jacobian: O(N x D) memory, small problems only.

        Discrete actions: the derivative with respect to the chosen one-hot entry, which for
        a map affine in the one-hot equals the state change of the chosen option.
        """
        relaxed = self.relax(actions).detach()
        e, n = relaxed.shape[:2]

        def summed_state(a: Tensor) -> Tensor:
            # environments are independent, so the Jacobian of the sum over E holds each
            # environment's own block
            return self.system_state(a, context).sum(dim=0)

        jac = torch.autograd.functional.jacobian(summed_state, relaxed, vectorize=True)
        d = jac.shape[0]
        jac = jac.movedim(0, -1)  # [E, N, A or action_dim, D]
        if self.action_kind == "discrete":
            chosen = actions.long()[..., None, None].expand(e, n, 1, d)
            value = jac.gather(2, chosen).squeeze(2)  # [E, N, D]
        else:
            value = jac.movedim(2, -1)  # [E, N, D, action_dim]
            if value.shape[-1] == 1:
                value = value.squeeze(-1)
        index = torch.arange(d, device=value.device).expand(e, n, d)
        return SparseInfluence(index=index, value=value)

    def guidance(
        self,
        actions: Tensor,
        context: Any,
        exact_difference: bool = False,
        mean_action: Tensor | None = None,
    ) -> Tensor:
        """Guidance weight of every agent, ``[E, N]``.

        Discrete actions: g_i = <x - x_ref, z_i> (the paper's weight); with
        ``exact_difference``, g_i - 1/2 ||z_i||^2, the exact change of d(x, x_ref) caused by
        agent i's chosen option (x affine in each agent's one-hot row; unbiased, see
        docs/theory_tests.md section 1).

        Continuous actions: g_i = (dx/da_i)^T (x - x_ref) is the *pathwise* gradient; used as
        a score-function weight (a PPO advantage) it does not estimate the gradient of
        G = E[d] (docs/theory_tests.md section 2). With ``mean_action`` (the policy mean
        mu_i) the weight is the difference against the mean,
        L_i = g_i . (a_i - mu_i) (exact for the mean of a Gaussian policy on a linear map,
        first order otherwise), and with ``exact_difference`` additionally
        - 1/2 ||z_i (a_i - mu_i)||^2, which makes it D_i = d(x) - d(x with a_i := mu_i)
        exactly when x is affine in a_i. Without ``mean_action`` the raw pathwise g is
        returned (``[E, N, action_dim]`` for vector actions), for analysis only.

        Args:
            actions: ``[E, N]`` integer (discrete) or ``[E, N, action_dim]`` float actions.
            context: the environment's ``model_context()`` for this step.
            exact_difference: see above.
            mean_action: ``[E, N, action_dim]`` policy means (continuous actions only).
        """
        continuous = self.action_kind == "continuous"
        if mean_action is not None and not continuous:
            raise GuidanceError("mean_action is for continuous actions; discrete guidance takes the chosen option")
        if exact_difference and continuous and mean_action is None:
            raise GuidanceError(
                "exact_difference for continuous actions is the difference against a reference action: "
                "pass mean_action (the policy mean), as the trainer does (docs/theory_tests.md)"
            )
        if mean_action is not None and mean_action.shape != actions.shape:
            raise GuidanceError(f"mean_action has shape {tuple(mean_action.shape)}, actions {tuple(actions.shape)}")
        x_ref = self.reference(context)
        closed_form = self.closed_form_influence or (exact_difference and not continuous)
        z: SparseInfluence | None = None
        if closed_form:
            with torch.no_grad():
                x = self.state(actions, context)
                z = self.influence(actions, context)
                g = z.dot(x - x_ref)
        else:
            with torch.enable_grad():
                relaxed = self.relax(actions).detach().requires_grad_(True)
                x = self._checked(self.system_state(relaxed, context), "system_state")
                (grad,) = torch.autograd.grad(x, relaxed, grad_outputs=(x - x_ref).detach())
            if self.action_kind == "discrete":
                g = grad.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            else:
                g = grad.squeeze(-1) if grad.shape[-1] == 1 else grad
        if not continuous:
            if exact_difference:
                assert z is not None
                g = g - 0.5 * z.squared_norm()
            return self._checked(g.detach(), "guidance")
        if mean_action is None:
            return self._checked(g.detach(), "guidance")
        delta = (actions - mean_action).to(g.dtype)  # [E, N, k]
        g_vec = g.unsqueeze(-1) if g.dim() == 2 else g
        weight = (g_vec * delta).sum(-1)
        if exact_difference:
            z = z if z is not None else self.influence(actions, context)
            value = z.value if z.value.dim() == 4 else z.value.unsqueeze(-1)  # [E, N, K, k]
            step = (value * delta.unsqueeze(2)).sum(-1)  # z_i (a_i - mu_i), [E, N, K]
            weight = weight - 0.5 * step.square().sum(-1)
        return self._checked(weight.detach(), "guidance")

    @staticmethod
    def _checked(t: Tensor, what: str) -> Tensor:
        if not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).sum().item()
            raise GuidanceError(f"{what} returned {bad} NaN or infinite value(s); check the model's inputs")
        return t
