"""Analytical model of the cloud cluster: committed utilisation and its load-balanced reference.

State x (``[E, 2M]``, layout server-major: component ``2k + r`` is server k, resource r with
r = 0 CPU, r = 1 memory): the *committed* utilisation of every server after the step's jobs
are dispatched,

    x_{k,r} = (running_{k,r} + queued_{k,r} + sum_{i -> k} d_{i,r}) / C_{k,r},

which exceeds 1 when jobs wait. Each dispatched job adds d_{i,r} / C_{k,r} to its server's
two components, so x is affine in every agent's one-hot choice and the local influence is
sparse: z_i has two non-zeros, d_{i,r} / C_{a_i,r} at (a_i, r) (closed form below).

Reference x_ref: for each resource r, the fluid load-balancing program

    minimise_l  sum_k l_k^2 / (2 C_k) + b_k l_k
    subject to  sum_k l_k = L_r,   0 <= l_k <= u_max C_k,

with L_r the scenario's *offered* load (demand of jobs in nominal service, a function of the
arrival stream only: exogenous) and b_k = eta * sqrt(C_min / C_k): a per-unit delay price
that falls with server size, as square-root staffing prescribes (a server with c cores needs
headroom ~ 1/sqrt(c) for the same queueing delay). The solution l_k = C_k (nu - b_k), clipped,
gives larger servers a higher target utilisation; x_ref = l / C. The two resources are two
instances of one batched call per step, solved by the configured allocation layer
("waterfill": exact, or "cvxpylayers").

Guidance potential phi(x, x_ref) (``potential``):

* ``"distance"``: the paper's 1/2 ||x - x_ref||^2;
* ``"capacity"``: 1/2 ||x - x_ref||^2 + lambda/2 ||relu(x - 1)||^2, which also penalises
  committed load beyond a server's capacity (jobs that will wait), lambda =
  ``overload_penalty``. The distance alone barely ranks competitive policies (a policy can
  be close to x_ref on average and still overload a few servers); the penalty is what the
  reward charges for. Both are separable, so the exact difference costs O(1) per agent.

The ``"capacity"`` potential's two further weights: ``distance_weight`` c scales the distance
term (c = 0: overload only), and ``packing_weight`` mu adds - mu/2 ||1 - min(x, 1)||^2, which
rewards uneven headroom (its exact difference is least on the fullest server that still fits
the job, as Best-Fit chooses). Off by default: neither moved DG-PG's result (docs/results.md).

``potential_weighting = "capacity"`` weighs server k's two components by C_{k,r} / mean_k
C_{k,r} (the potential in load units, as the reference program's objective sum l^2 / 2C is):
a unit of overload on a large server then counts as more waiting jobs than on a small one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from guidedmarl.analytical.layers import AllocationLayer
from guidedmarl.analytical.model import AnalyticalModel, SparseInfluence


@dataclass
class CloudContext:
    """Pre-dispatch quantities of one step, batched over E environments.

    Attributes:
        committed: ``[E, M, 2]`` running plus queued load (vCPU, GiB) before the dispatch.
        capacity: ``[M, 2]`` server capacities (vCPU, GiB).
        candidates: ``[N, K]`` long, each agent's candidate servers.
        demand: ``[E, N, 2]`` (vCPU, GiB) of each agent's job, 0 for agents without a job.
        offered: ``[E, 2]`` offered load (vCPU, GiB) of the scenario at this step.
        episode_offered: ``[E, S, 2]`` the offered load of every step of the episode (the
            environment passes the same tensor object at every step of an episode), or None.
        step: index of this step in ``episode_offered`` (its ``[:, step]`` is ``offered``).

    The offered load is exogenous (the scenario's, not the agents'), so the reference of every
    step can be solved in one batched call per episode: :class:`CloudModel` does so when
    ``episode_offered`` is given and reuses it for the episode's other steps.
    """

    committed: Tensor
    capacity: Tensor
    candidates: Tensor
    demand: Tensor
    offered: Tensor
    episode_offered: Tensor | None = None
    step: int = 0


class CloudModel(AnalyticalModel):
    """Committed utilisation x, load-balanced reference x_ref, sparse closed-form z_i.

    Args:
        num_candidates: K, options per agent.
        layer: the allocation layer solving the reference program.
        eta: delay-price scale of the reference program (dimensionless).
        max_utilisation: upper bound u_max of a server's reference utilisation.
        potential: the guidance potential (see the module docstring).
        overload_penalty: lambda of the ``"capacity"`` potential (per unit utilisation^2).
        component_weights: ``[2M]`` weights w_j of the potential's components (None: 1).
        distance_weight: c, weight of the distance term.
        packing_weight: mu of the ``"capacity"`` potential's packing term.
    """

    action_kind = "discrete"
    closed_form_influence = True

    def __init__(
        self,
        num_candidates: int,
        layer: AllocationLayer,
        eta: float = 0.2,
        max_utilisation: float = 1.0,
        potential: Literal["distance", "capacity"] = "capacity",
        overload_penalty: float = 100.0,
        component_weights: Tensor | None = None,
        distance_weight: float = 1.0,
        packing_weight: float = 0.0,
    ):
        super().__init__(num_actions=num_candidates)
        self.layer = layer
        self.eta = eta
        self.max_utilisation = max_utilisation
        self.potential_kind = potential
        self.overload_penalty = overload_penalty
        self.component_weights = component_weights
        self.distance_weight = distance_weight
        self.packing_weight = packing_weight
        self._episode_reference: tuple[Tensor, Tensor, Tensor] | None = None

    def potential_terms(self, x: Tensor, x_ref: Tensor) -> Tensor:
        terms = 0.5 * self.distance_weight * (x - x_ref).square()
        if self.potential_kind == "capacity":
            terms = terms + 0.5 * self.overload_penalty * torch.relu(x - 1.0).square()
            terms = terms - 0.5 * self.packing_weight * (1.0 - x.clamp(max=1.0)).square()
        return terms

    def potential_gradient(self, x: Tensor, x_ref: Tensor) -> Tensor:
        grad = self.distance_weight * (x - x_ref)
        if self.potential_kind == "capacity":
            grad = grad + self.overload_penalty * torch.relu(x - 1.0)
            grad = grad + self.packing_weight * (1.0 - x.clamp(max=1.0))
        return grad

    def potential_drop(self, x: Tensor, x_ref: Tensor, step: Tensor) -> Tensor:
        drop = self.distance_weight * ((x - x_ref) * step - 0.5 * step.square())
        if self.potential_kind == "capacity":
            over_now, over_before = torch.relu(x - 1.0), torch.relu(x - step - 1.0)
            drop = drop + 0.5 * self.overload_penalty * (over_now - over_before) * (over_now + over_before)
            room_now, room_before = 1.0 - x.clamp(max=1.0), 1.0 - (x - step).clamp(max=1.0)
            drop = drop + 0.5 * self.packing_weight * (room_before - room_now) * (room_before + room_now)
        return drop

    def system_state(self, actions: Tensor, context: CloudContext) -> Tensor:
        e, n, k = actions.shape
        m = context.capacity.shape[0]
        # each agent's job added to its chosen candidate: [E, N, K, 2]
        added = actions.unsqueeze(-1) * context.demand.to(actions.dtype).unsqueeze(2)
        servers = context.candidates.reshape(1, n * k, 1).expand(e, n * k, 2)
        load = context.committed.to(actions.dtype).scatter_add(1, servers, added.reshape(e, n * k, 2))
        return (load / context.capacity.to(actions.dtype)).reshape(e, m * 2)

    def reference_state(self, context: CloudContext) -> Tensor:
        episode = context.episode_offered
        if episode is None or context.offered.requires_grad or not torch.equal(context.offered, episode[:, context.step]):
            return self._reference_of(context.offered, context.capacity, context.demand.dtype)
        # One solve for the whole episode. The cache holds the episode's tensor itself, so an
        # identity match cannot be a later tensor that reuses freed memory.
        cache = self._episode_reference
        if cache is None or cache[0] is not episode or cache[1] is not context.capacity:
            e, steps, _ = episode.shape
            x_ref = self._reference_of(episode.reshape(e * steps, 2), context.capacity, context.demand.dtype)
            cache = self._episode_reference = (episode, context.capacity, x_ref.reshape(e, steps, -1))
        return cache[2][:, context.step]

    def _reference_of(self, offered: Tensor, capacity: Tensor, dtype: torch.dtype) -> Tensor:
        """x_ref ``[B, 2M]`` for ``[B, 2]`` offered loads on servers of ``capacity`` ``[M, 2]``."""
        cap = capacity.to(torch.float64).T  # [2, M]
        e, m = offered.shape[0], cap.shape[1]
        c = cap.unsqueeze(0).expand(e, 2, m).reshape(e * 2, m)
        b = self.eta * (cap.min(dim=1, keepdim=True).values / cap).sqrt()
        b = b.unsqueeze(0).expand(e, 2, m).reshape(e * 2, m)
        upper = self.max_utilisation * c
        # offered load above the fleet's bound is unreachable: the reference is then "full"
        total = offered.to(torch.float64).reshape(e * 2).clamp(max=upper.sum(1) * (1 - 1e-9))
        load = self.layer(c, b, total, torch.zeros_like(c), upper)
        util = (load / c).reshape(e, 2, m).transpose(1, 2)  # [E, M, 2]
        return util.reshape(e, m * 2).to(dtype)

    def influence(self, actions: Tensor, context: CloudContext) -> SparseInfluence:
        e, n = actions.shape
        server = context.candidates.unsqueeze(0).expand(e, n, -1).gather(2, actions.long().unsqueeze(-1)).squeeze(-1)
        index = torch.stack([2 * server, 2 * server + 1], dim=-1)  # [E, N, 2]
        value = context.demand / context.capacity[server]  # [E, N, 2]
        return SparseInfluence(index=index, value=value)
