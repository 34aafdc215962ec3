"""The guidance weight g_i of every agent: the one place where it is computed.

For a model with state x (after the agents act), reference x_ref, potential phi(x, x_ref)
(:meth:`AnalyticalModel.potential_terms`, default 1/2 ||x - x_ref||^2) and local influence
z_i = dx/da_i:

* **first order** (the paper's weight): g_i = < grad phi(x), z_i >; for the default potential
  this is < x - x_ref, z_i >.
* **exact difference**: D_i = phi(x) - phi(x - z_i), the exact change of the potential
  caused by agent i's chosen option (x affine in each agent's one-hot row). For the default
  potential D_i = g_i - 1/2 ||z_i||^2; it is an unbiased estimate of the gradient of
  E[phi], while g_i is biased by grad E[1/2 ||z_i||^2] (docs/theory_tests.md section 1).

Continuous actions use the difference against the policy mean mu_i (a raw pathwise gradient
is not a score-function weight, docs/theory_tests.md section 2): with delta_i = a_i - mu_i
the first-order weight is L_i = < grad phi(x), z_i delta_i > and the exact one
D_i = phi(x) - phi(x - z_i delta_i) (exact when x is affine in a_i).

The trainer, evaluation diagnostics and every study call :func:`guidance_weights`, so they
all measure the weight that training uses. A model whose state is linear in one scalar output
per agent (:class:`~guidedmarl.analytical.linear_outputs.LinearOutputModel`) gets the same
weights from a precomputed Gram matrix.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from guidedmarl.analytical.linear_outputs import LinearOutputModel
from guidedmarl.analytical.model import AnalyticalModel, SparseInfluence
from guidedmarl.errors import GuidanceError

WeightKind = Literal["first_order", "exact_difference"]


def guidance_weights(
    model: AnalyticalModel,
    actions: Tensor,
    context: Any,
    exact_difference: bool = False,
    mean_action: Tensor | None = None,
    structured: bool = True,
) -> Tensor:
    """Guidance weight of every agent, ``[E, N]`` (see the module docstring).

    Args:
        model: the domain's analytical model (its potential is used).
        actions: ``[E, N]`` integer (discrete) or ``[E, N, action_dim]`` float actions.
        context: the environment's ``model_context()`` taken *before* these actions.
        exact_difference: the exact difference D_i instead of the first-order g_i.
        mean_action: ``[E, N, action_dim]`` policy means (continuous actions). Without it a
            continuous model returns the raw pathwise weight g_i (``[E, N, action_dim]`` for
            vector actions), for analysis only; ``exact_difference`` then is an error.
        structured: use the model's structure where it has one (a
            :class:`~guidedmarl.analytical.linear_outputs.LinearOutputModel` with
            ``gram_guidance``: the Gram matrix instead of a backward pass through x); False
            forces the generic path, which checks and tests compare it with.
    """
    continuous = model.action_kind == "continuous"
    if mean_action is not None and not continuous:
        raise GuidanceError("mean_action is for continuous actions; discrete guidance takes the chosen option")
    if exact_difference and continuous and mean_action is None:
        raise GuidanceError(
            "exact_difference for continuous actions is the difference against a reference action: "
            "pass mean_action (the policy mean), as the trainer does (docs/theory_tests.md)"
        )
    if mean_action is not None and mean_action.shape != actions.shape:
        raise GuidanceError(f"mean_action has shape {tuple(mean_action.shape)}, actions {tuple(actions.shape)}")
    if structured and isinstance(model, LinearOutputModel) and model.gram_path(exact_difference):
        weights = model.gram_weights(actions, context, exact_difference, mean_action)
        return model.checked(weights.detach(), "guidance weights")
    x_ref = model.reference(context)
    use_influence = model.closed_form_influence or exact_difference
    z: SparseInfluence | None = None
    if use_influence:
        with torch.no_grad():
            x = model.state(actions, context)
            _check_reference(model, x, x_ref)
            z = model.checked_influence(model.influence(actions, context), actions, x.shape[1])
            grad_phi = _weighted(model, model.potential_gradient(x, x_ref))
            g = z.dot(grad_phi)
    else:
        with torch.enable_grad():
            relaxed = model.relax(actions).detach().requires_grad_(True)
            x = model.checked_state(model.system_state(relaxed, context), actions)
            _check_reference(model, x, x_ref)
            grad_phi = _weighted(model, model.potential_gradient(x.detach(), x_ref)).expand_as(x)
            (grad,) = torch.autograd.grad(x, relaxed, grad_outputs=grad_phi.detach())
        if not continuous:
            g = grad.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        else:
            g = grad.squeeze(-1) if grad.shape[-1] == 1 else grad
    if not continuous:
        if exact_difference:
            assert z is not None
            g = _exact_drop(model, x, x_ref, z, z.value)
        return model.checked(g.detach(), "guidance weights")
    if mean_action is None:
        return model.checked(g.detach(), "guidance weights")
    delta = (actions - mean_action).to(g.dtype)  # [E, N, k]
    if exact_difference:
        assert z is not None
        value = z.value if z.value.dim() == 4 else z.value.unsqueeze(-1)  # [E, N, K, k]
        step = (value * delta.unsqueeze(2)).sum(-1)  # z_i (a_i - mu_i), [E, N, K]
        weight = _exact_drop(model, x, x_ref, z, step)
    else:
        g_vec = g.unsqueeze(-1) if g.dim() == 2 else g
        weight = (g_vec * delta).sum(-1)
    return model.checked(weight.detach(), "guidance weights")


def _weighted(model: AnalyticalModel, grad: Tensor) -> Tensor:
    """w_j d phi_j / d x_j (the model's ``component_weights``, if any)."""
    w = model.component_weights
    return grad if w is None else grad * w.to(grad.dtype)


def _exact_drop(model: AnalyticalModel, x: Tensor, x_ref: Tensor, z: SparseInfluence, step: Tensor) -> Tensor:
    """sum_k w_k [phi_k(x_k) - phi_k(x_k - step_k)] over each agent's components: ``[E, N]``."""
    drop = model.sparse_potential_drop(x, x_ref.to(x.dtype), z, step.to(x.dtype))
    w = model.component_weights
    if w is not None:
        e, n, k = z.index.shape
        drop = drop * w.to(drop.dtype)[z.index.reshape(-1)].reshape(e, n, k)
    return drop.sum(dim=2)


def _check_reference(model: AnalyticalModel, x: Tensor, x_ref: Tensor) -> None:
    if x_ref.shape[1] != x.shape[1] or x_ref.shape[0] not in (1, x.shape[0]):
        raise GuidanceError(
            f"{type(model).__name__}: reference_state has shape {tuple(x_ref.shape)} but system_state has "
            f"shape {tuple(x.shape)}; x_ref must be [E, D] (or [1, D]) with the same D as x"
        )
