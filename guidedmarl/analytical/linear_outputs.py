"""`LinearOutputModel`: guidance from a precomputed Gram matrix for states linear in per-agent outputs.

Many physical models have one scalar *output* per agent, u_i = u_i(a_i) (a generator's
power, a pump's flow), and a state that is linear in the outputs, with a reference that is
the state of reference outputs:

    x = A u + c,        x_ref = A u_ref + c,

where A ``[D, N]`` and c ``[E, D]`` come from the system (a network's sensitivities, the
demand). With the paper's weighted quadratic potential phi = 1/2 sum_j w_j (x_j - x_ref_j)^2,

    grad_u phi = A^T W (x - x_ref) = M (u - u_ref),        M = A^T W A  ``[N, N]``,

so every guidance weight needs only the N x N Gram matrix M and never the D-dimensional
state. For a fixed network M is computed once; the generic path (a backward pass through
x) reads the D x N matrix A about three times per step, which for a transmission network
(D = 17,495 components, N = 1,445 generators) is 100 MB per pass against M's 8 MB.

With s_i = du_i/da_i and r = M (u - u_ref), the weights that :func:`guidance_weights` computes
for every model (first order and exact difference, docs/theory_tests.md) become

    g_i = r_i s_i,                                          (pathwise, no mean action)
    L_i = r_i s_i delta_i,                                  (first order, delta_i = a_i - mu_i)
    D_i = r_i sigma_i - 1/2 M_ii sigma_i^2, sigma_i = s_i delta_i.   (exact difference)

They equal the generic path's up to float rounding (``tests/analytical/test_linear_outputs.py``
and ``guidedmarl check``, which compares both on the domain's own rollouts).

A subclass implements ``system_state`` and ``reference_state`` as usual (for diagnostics,
checks and the generic path) plus the four methods below. With the default quadratic
potential nothing else is needed.

A potential with further terms, phi = quadratic + psi(x) (``potential_terms`` overridden),
keeps the Gram path for the first-order and pathwise weights when the subclass sets
``nonquadratic_potential = True`` and gives psi's gradient in the outputs,
h = A^T W grad psi(x), through :meth:`nonquadratic_gradient`: then r = M (u - u_ref) + h, and
g_i and L_i above hold as written. Only the components where grad psi is not zero need A's
rows (an overload charge: the lines beyond their limits). The exact difference of psi is not
a function of r: D_i = r_i sigma_i - 1/2 M_ii sigma_i^2 + [psi(x) - psi(x - A_i sigma_i)], with
r here the quadratic part's M (u - u_ref) only. A subclass that can compute the bracket from its
structure implements :meth:`nonquadratic_exact_drop` and keeps the Gram path for
exact-difference weights too; without it they take the generic path (:meth:`gram_path`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.errors import GuidanceError


class LinearOutputModel(AnalyticalModel):
    """An :class:`AnalyticalModel` with x = A u(a) + c, one scalar output per agent (module docstring)."""

    action_kind = "continuous"
    gram_guidance: ClassVar[bool] = True
    """Whether :func:`guidance_weights` takes the Gram path (False: the generic backward pass)."""
    nonquadratic_potential: ClassVar[bool] = False
    """True: ``potential_terms`` adds terms psi to the quadratic potential and
    :meth:`nonquadratic_gradient` gives their output gradient (module docstring)."""

    def gram_path(self, exact_difference: bool) -> bool:
        """Whether these weights come from M (else the generic path): always for the quadratic
        potential; for exact-difference weights of a non-quadratic one, when the subclass gives
        the extra terms' exact difference (:meth:`nonquadratic_exact_drop`)."""
        if not self.gram_guidance:
            return False
        return not (exact_difference and self.nonquadratic_potential and not self._has_exact_drop())

    def _has_exact_drop(self) -> bool:
        return type(self).nonquadratic_exact_drop is not LinearOutputModel.nonquadratic_exact_drop

    def nonquadratic_exact_drop(self, actions: Tensor, context: Any, sigma: Tensor) -> Tensor:
        """psi(x) - psi(x - A_i sigma_i) for every agent, ``[E, N]``: the exact difference of the
        potential's non-quadratic terms (weighted as in the potential) when agent i's output moves
        back by sigma_i ``[E, N]`` (module docstring). Optional: without it exact-difference
        weights of a non-quadratic potential take the generic path."""
        raise NotImplementedError(f"{type(self).__name__} does not implement nonquadratic_exact_drop")

    def nonquadratic_gradient(self, actions: Tensor, context: Any) -> Tensor:
        """h = A^T W grad psi(x) ``[E, N]``: the output gradient of the potential's terms beyond the
        quadratic one, W the ``component_weights``. Needed only with ``nonquadratic_potential``."""
        raise NotImplementedError(
            f"{type(self).__name__} sets nonquadratic_potential = True: implement nonquadratic_gradient"
        )

    @abstractmethod
    def outputs(self, actions: Tensor, context: Any) -> Tensor:
        """u(a): ``[E, N, 1]`` actions to ``[E, N]`` outputs."""

    @abstractmethod
    def output_slopes(self, actions: Tensor, context: Any) -> Tensor:
        """s_i = du_i / da_i at the actions, ``[E, N]``."""

    @abstractmethod
    def reference_outputs(self, context: Any) -> Tensor:
        """u_ref, the outputs whose state is ``reference_state``, ``[E, N]`` (exogenous)."""

    @abstractmethod
    def gram(self, context: Any) -> Tensor:
        """M = A^T W A, ``[N, N]`` (symmetric), with W the ``component_weights`` (1 if None).

        Cache it when A and W are fixed (a network's sensitivities): it is called every step.
        """

    def gram_weights(
        self, actions: Tensor, context: Any, exact_difference: bool, mean_action: Tensor | None
    ) -> Tensor:
        """Guidance weights from M (module docstring): ``[E, N]``, or ``[E, N]`` pathwise g without a mean."""
        if type(self).potential_terms is not AnalyticalModel.potential_terms and not self.nonquadratic_potential:
            raise GuidanceError(
                f"{type(self).__name__} overrides potential_terms: the Gram-matrix guidance of LinearOutputModel "
                "holds for the quadratic potential only; set gram_guidance = False to use the generic path, or "
                "nonquadratic_potential = True with nonquadratic_gradient (the extra terms' output gradient)"
            )
        if exact_difference and self.nonquadratic_potential and not self._has_exact_drop():
            raise GuidanceError(
                f"{type(self).__name__}: the exact difference of a non-quadratic potential is not a Gram-matrix "
                "quantity; guidance_weights takes the generic path for it (gram_path)"
            )
        if actions.dim() != 3 or actions.shape[-1] != 1:
            raise GuidanceError(
                f"{type(self).__name__}: LinearOutputModel takes one scalar action per agent, [E, N, 1]; "
                f"got actions of shape {tuple(actions.shape)}"
            )
        with torch.no_grad():
            m = self.gram(context)
            dtype = m.dtype
            u = self.outputs(actions, context).to(dtype)
            u_ref = self.reference_outputs(context).to(dtype)
            if m.dim() != 2 or m.shape[0] != m.shape[1] or m.shape[0] != u.shape[1]:
                raise GuidanceError(
                    f"{type(self).__name__}.gram must return [N, N] = [{u.shape[1]}, {u.shape[1]}], got {list(m.shape)}"
                )
            quadratic = (u - u_ref) @ m  # M symmetric: (M (u - u_ref))^T per environment
            residual = quadratic
            if self.nonquadratic_potential and not (exact_difference and mean_action is not None):
                extra = self.nonquadratic_gradient(actions, context)
                if tuple(extra.shape) != tuple(residual.shape):
                    raise GuidanceError(
                        f"{type(self).__name__}.nonquadratic_gradient must return [E, N] = "
                        f"{list(residual.shape)}, got {list(extra.shape)}"
                    )
                residual = residual + extra.to(dtype)
            slope = self.output_slopes(actions, context).to(dtype)
            if mean_action is None:
                weight = residual * slope
            else:
                sigma = slope * (actions - mean_action).squeeze(-1).to(dtype)
                if exact_difference:
                    weight = quadratic * sigma - 0.5 * torch.diagonal(m) * sigma.square()
                    if self.nonquadratic_potential:
                        weight = weight + self.nonquadratic_exact_drop(actions, context, sigma).to(dtype)
                else:
                    weight = residual * sigma
        return weight.to(torch.get_default_dtype())  # as the generic path, whose relax() casts to it
