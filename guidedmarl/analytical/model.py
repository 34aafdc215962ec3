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

and one function of the state, the **guidance potential** phi(x, x_ref) that descent
guidance lowers. The paper's potential is the distance d = 1/2 ||x - x_ref||^2; a model may
define its own (e.g. a penalty for load beyond capacity) by overriding ``potential_terms``,
and weigh the components with ``component_weights``. Potentials are *separable*, a weighted
sum over components phi = sum_j w_j phi_j(x_j, x_ref_j), so an agent that touches K
components changes K terms and its exact effect costs O(K).

The guidance weights themselves (g_i = <grad phi(x), z_i>, or the exact difference) are
computed in one place, :func:`guidedmarl.guidance.weights.guidance_weights`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from guidedmarl.errors import DomainError, GuidanceError
from guidedmarl.finite import all_finite, count_nonfinite


@dataclass
class SparseInfluence:
    """z_i = dx/da_i stored as (component index, value) pairs per agent.

    Attributes:
        index: ``[E, N, K]`` long, the components of x agent i changes (each at most once).
        value: ``[E, N, K]`` (scalar actions) or ``[E, N, K, action_dim]``, dx[index]/da_i.
    """

    index: Tensor
    value: Tensor

    def gather(self, v: Tensor) -> Tensor:
        """The components of ``v`` (``[E, D]`` or ``[1, D]``) each agent touches: ``[E, N, K]``."""
        e, n, k = self.index.shape
        if v.shape[0] != e:
            v = v.expand(e, -1)
        return v.gather(1, self.index.reshape(e, n * k)).reshape(e, n, k)

    def dot(self, v: Tensor) -> Tensor:
        """<v, z_i> for every agent: ``[E, D] -> [E, N]`` (or ``[E, N, action_dim]``)."""
        picked = self.gather(v)
        if self.value.dim() == 4:
            picked = picked.unsqueeze(-1)
        return (picked * self.value).sum(dim=2)

    def squared_norm(self) -> Tensor:
        """||z_i||^2 per agent, ``[E, N]`` (summed over action dimensions if any)."""
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
    so that guidance uses it instead of autograd, and override ``potential_terms`` (and,
    for speed or precision, ``potential_gradient`` and ``potential_drop``) to change the
    guidance potential.
    """

    action_kind: ClassVar[Literal["discrete", "continuous"]] = "discrete"
    closed_form_influence: ClassVar[bool] = False
    reference_follows_state: ClassVar[bool] = False
    """True for a model whose x_ref is computed from the current state (e.g. targets assigned
    from the agents' positions), which earlier actions shaped. The reference is still fixed
    within a step (computed before the actions, without gradient), but the exogeneity the
    theory assumes holds only step by step: ``guidedmarl check`` then measures how far x_ref
    moves between copies of a scenario instead of failing (docs/theory.md)."""
    component_weights: Tensor | None = None
    """Optional ``[D]`` non-negative weights w_j of the potential, phi = sum_j w_j phi_j (None: all 1)."""

    def __init__(self, num_actions: int = 0) -> None:
        if self.action_kind == "discrete" and num_actions < 1:
            raise DomainError(f"{type(self).__name__}: a discrete AnalyticalModel needs num_actions >= 1")
        self.num_actions = num_actions

    # ----------------------------------------------------------------- to implement
    @abstractmethod
    def system_state(self, actions: Tensor, context: Any) -> Tensor:
        """Post-action system state x, ``[E, D]``, differentiable in ``actions``."""

    @abstractmethod
    def reference_state(self, context: Any) -> Tensor:
        """Reference (efficient) state x_ref, ``[E, D]`` (or ``[1, D]``), exogenous."""

    # ----------------------------------------------------------------- the potential
    def potential_terms(self, x: Tensor, x_ref: Tensor) -> Tensor:
        """phi_j(x_j, x_ref_j) for every component (elementwise, any broadcastable shapes).

        Default: the paper's 1/2 (x - x_ref)^2, so that phi = d(x, x_ref).
        """
        return 0.5 * (x - x_ref).square()

    def potential_gradient(self, x: Tensor, x_ref: Tensor) -> Tensor:
        """d phi / d x, elementwise. Default: x - x_ref, or autograd of ``potential_terms``."""
        if type(self).potential_terms is AnalyticalModel.potential_terms:
            return x - x_ref
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.potential_terms(leaf, x_ref).sum(), leaf)
        return grad

    def potential_drop(self, x: Tensor, x_ref: Tensor, step: Tensor) -> Tensor:
        """phi_j(x_j) - phi_j(x_j - step_j), elementwise: the exact change one agent makes.

        Default: (x - x_ref) step - step^2 / 2 for the quadratic (no cancellation), else the
        difference of ``potential_terms``.
        """
        if type(self).potential_terms is AnalyticalModel.potential_terms:
            return (x - x_ref) * step - 0.5 * step.square()
        return self.potential_terms(x, x_ref) - self.potential_terms(x - step, x_ref)

    def sparse_potential_drop(self, x: Tensor, x_ref: Tensor, z: SparseInfluence, step: Tensor) -> Tensor:
        """phi_j(x_j) - phi_j(x_j - step_j) on the components each agent touches, ``[E, N, K]``.

        ``x``, ``x_ref``: ``[E, D]``; ``step``: ``[E, N, K]``, agent i's change of component
        ``z.index[:, i, k]``. Default: :meth:`potential_drop` on the gathered values. Override it
        where the terms phi_j have per-component parameters (``potential_drop`` only sees the
        gathered values, not which component they belong to).
        """
        return self.potential_drop(z.gather(x), z.gather(x_ref), step)

    def potential(self, x: Tensor, x_ref: Tensor) -> Tensor:
        """phi(x, x_ref) = sum_j w_j phi_j(x_j, x_ref_j) per environment, ``[E]``."""
        terms = self.potential_terms(x, x_ref)
        if self.component_weights is not None:
            terms = terms * self.component_weights.to(terms.dtype)
        return terms.sum(dim=-1)

    def distance(self, x: Tensor, x_ref: Tensor) -> Tensor:
        """The paper's d(x, x_ref) = 1/2 ||x - x_ref||^2 per environment, ``[E]``."""
        return 0.5 * (x - x_ref).square().sum(dim=-1)

    # ----------------------------------------------------------------- provided
    def relax(self, actions: Tensor) -> Tensor:
        """Actions as the float tensor ``system_state`` differentiates: one-hot if discrete."""
        if self.action_kind == "discrete":
            if actions.dtype not in (torch.int64, torch.int32):
                raise GuidanceError(f"discrete actions must be integer, got {actions.dtype}")
            if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= self.num_actions):
                raise GuidanceError(
                    f"discrete actions must lie in [0, {self.num_actions - 1}] (num_actions={self.num_actions}), "
                    f"got values in [{int(actions.min())}, {int(actions.max())}]"
                )
            return torch.nn.functional.one_hot(actions.long(), self.num_actions).to(torch.get_default_dtype())
        return actions.to(torch.get_default_dtype())

    def state(self, actions: Tensor, context: Any) -> Tensor:
        """x for integer (discrete) or float (continuous) actions, checked (shape, NaN)."""
        return self.checked_state(self.system_state(self.relax(actions), context), actions)

    def reference(self, context: Any) -> Tensor:
        """x_ref under ``torch.no_grad`` (exogenous), checked for NaN."""
        with torch.no_grad():
            x_ref = self.reference_state(context)
        if not isinstance(x_ref, Tensor) or x_ref.dim() != 2:
            raise GuidanceError(
                f"{type(self).__name__}.reference_state must return a [E, D] tensor, got "
                f"{tuple(x_ref.shape) if isinstance(x_ref, Tensor) else type(x_ref).__name__}"
            )
        return self.checked(x_ref.detach(), "reference_state")

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

    # ----------------------------------------------------------------- boundary checks
    def checked_state(self, x: Tensor, actions: Tensor) -> Tensor:
        """``system_state``'s output checked: a finite ``[E, D]`` tensor for E environments."""
        e = actions.shape[0]
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] != e:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise GuidanceError(
                f"{type(self).__name__}.system_state must return x of shape [E, D] = [{e}, D] "
                f"for actions of shape {tuple(actions.shape)}, got {shape}"
            )
        return self.checked(x, "system_state")

    def checked_influence(self, z: SparseInfluence, actions: Tensor, dim: int) -> SparseInfluence:
        """``influence``'s output checked: shapes ``[E, N, K](, k)``, indices in ``[0, D)``."""
        name = f"{type(self).__name__}.influence"
        if not isinstance(z, SparseInfluence):
            raise GuidanceError(f"{name} must return a SparseInfluence, got {type(z).__name__}")
        e, n = actions.shape[:2]
        if z.index.dim() != 3 or tuple(z.index.shape[:2]) != (e, n):
            raise GuidanceError(f"{name}: index must have shape [E, N, K] = [{e}, {n}, K], got {list(z.index.shape)}")
        if z.index.dtype not in (torch.int64, torch.int32):
            raise GuidanceError(f"{name}: index must be an integer tensor, got {z.index.dtype}")
        if z.index.numel() and (int(z.index.min()) < 0 or int(z.index.max()) >= dim):
            raise GuidanceError(
                f"{name}: index values must lie in [0, {dim - 1}] (x has D = {dim} components), "
                f"got values in [{int(z.index.min())}, {int(z.index.max())}]"
            )
        want = tuple(z.index.shape)
        if self.action_kind == "continuous" and actions.dim() == 3 and actions.shape[-1] > 1:
            want = (*want, actions.shape[-1])
        if tuple(z.value.shape) != want:
            raise GuidanceError(f"{name}: value must have shape {list(want)} (like index), got {list(z.value.shape)}")
        self.checked(z.value, "influence")
        return z

    def checked(self, t: Tensor, what: str) -> Tensor:
        """``t`` if every entry is finite, else a :class:`GuidanceError` naming ``what``."""
        if not all_finite(t):
            bad = count_nonfinite(t)
            raise GuidanceError(
                f"{type(self).__name__}.{what} returned {bad} NaN or infinite value(s); check the model's inputs"
            )
        return t
