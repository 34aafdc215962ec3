"""Analytical model of route choice: link flows over capacity, and the system optimum as reference.

State x (``[E, L]``): every link's flow over its capacity after the packets choose,

    x_l = (v_bg,l + sum_i s_i [l in route(i, a_i)]) / C_l,

with s_i packet i's flow (veh/h), route(i, j) its OD pair's j-th route and v_bg the background
traffic (OD pairs without packets, at their user-equilibrium split; zero when N >= W). On the one-hot
actions a_ij the map is x = (v_bg + Delta^T h) / C with path flows h_p = sum_{i,j: route(i,j)=p} a_ij s_i:
linear in every packet's one-hot row, so agent i's influence is the change its chosen route causes,

    z_i = s_i / C_l  on the links l of route(i, a_i),   0 elsewhere

(sparse, at most the longest route's link count; ``influence`` gives it in closed form and guidance
uses it, ``closed_form_influence = True``; the generic autograd path checks it in the tests).

Reference x_ref = v_SO / C, the system-optimal link flows of the scenario on the agents' route sets
(:mod:`.reference`), computed from the scenario's demand only (exogenous), so guidance is
g_i = <x - x_ref, z_i> = (s_i / C) . (x - x_ref) summed over the chosen route's links: how much packet
i's route adds to links that are above their system-optimal load.

Guidance potential phi(x, x_ref) (``TrafficSettings.potential``):

* ``"distance"``: the paper's 1/2 ||x - x_ref||^2;
* ``"system_cost"``: the SO objective itself, TSTT(x) / T_ff = sum_l C_l (t0_l x_l + t0_l b_l
  x_l^(p_l + 1)) / T_ff, i.e. minus the reward of the day. Its gradient along packet i's route is
  the route's marginal social cost, g_i = s_i sum_{l in route} t0_l (1 + (p_l + 1) b_l x_l^p_l) / T_ff
  (what marginal-cost tolls charge), and its exact difference phi(x) - phi(x - z_i) is the TSTT the
  packet adds (a difference reward). It ignores x_ref: the reference is the potential's minimiser
  over the route sets, not an input to it;
* ``"cost_divergence"``: the Bregman divergence of the SO objective from the reference,
  [TSTT(x) - TSTT(x_ref) - <grad TSTT(x_ref), x - x_ref>] / T_ff: zero only at x_ref, like the
  distance, but measured in travel time. Its gradient along a route is the route's marginal cost now
  minus at the reference, g_i = s_i sum_{l in route} (m_l(x) - m_l(x_ref)) / T_ff; at the route-set SO
  every used route of an OD pair has the same marginal cost, so the subtraction is a per-OD baseline
  on used routes (it lowers the spread of g across OD pairs that the raw system cost has);
* ``"mixed"``: distance + ``cost_weight`` x system_cost.

All are separable over links; the system-cost terms have per-link parameters, so the exact
difference goes through :meth:`sparse_potential_drop` with the links' indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel, SparseInfluence

from .system import TrafficSystem


@dataclass
class TrafficContext:
    """Pre-choice quantities of one period, batched over E environments.

    Attributes:
        size: ``[E, N]`` packet flows s_i (veh/h).
        background: ``[E, L]`` background link flows (veh/h).
        reference: ``[E, L]`` x_ref = v_SO / C.
    """

    size: Tensor
    background: Tensor
    reference: Tensor


class TrafficModel(AnalyticalModel):
    """x = link flow / capacity, x_ref = the system optimum, closed-form sparse z_i (module docstring)."""

    action_kind = "discrete"
    closed_form_influence = True

    def __init__(
        self,
        system: TrafficSystem,
        potential: Literal["distance", "system_cost", "cost_divergence", "mixed"] = "distance",
        cost_weight: float = 1.0,
    ) -> None:
        super().__init__(num_actions=system.k)
        self.system = system
        self.packet_routes = torch.as_tensor(system.packet_routes)  # [N, k] path index
        self.capacity = torch.as_tensor(system.net.capacity)
        self.potential_kind = potential
        self.distance_weight = 1.0 if potential in ("distance", "mixed") else 0.0
        self.cost_weight = {"distance": 0.0, "mixed": cost_weight}.get(potential, 1.0)
        self.centred = potential == "cost_divergence"  # subtract the linearisation at x_ref
        links = system.links
        # TSTT / T_ff = sum_l c1_l x_l + c2_l x_l^(p_l + 1), per unit of x = v / C (dimensionless)
        self.linear = torch.as_tensor(links.capacity * links.t0 / system.normaliser)
        self.bpr = torch.as_tensor(links.capacity * links.slope_scale / system.normaliser)
        self.power = torch.as_tensor(links.power)

    # ----------------------------------------------------------------- potential
    def _cost_terms(self, x: Tensor, linear: Tensor, bpr: Tensor, power: Tensor) -> Tensor:
        return linear * x + bpr * x.clamp_min(0.0) ** (power + 1.0)

    def _cost_slope(self, x: Tensor, linear: Tensor, bpr: Tensor, power: Tensor) -> Tensor:
        return linear + (power + 1.0) * bpr * x.clamp_min(0.0) ** power

    def potential_terms(self, x: Tensor, x_ref: Tensor) -> Tensor:
        terms = 0.5 * self.distance_weight * (x - x_ref).square()
        if self.cost_weight:
            params = self._link_params(x.dtype)
            cost = self._cost_terms(x, *params)
            if self.centred:
                cost = cost - self._cost_terms(x_ref, *params) - self._cost_slope(x_ref, *params) * (x - x_ref)
            terms = terms + self.cost_weight * cost
        return terms

    def potential_gradient(self, x: Tensor, x_ref: Tensor) -> Tensor:
        grad = self.distance_weight * (x - x_ref)
        if self.cost_weight:
            params = self._link_params(x.dtype)
            slope = self._cost_slope(x, *params)
            if self.centred:
                slope = slope - self._cost_slope(x_ref.to(x.dtype), *params)
            grad = grad + self.cost_weight * slope
        return grad

    def sparse_potential_drop(self, x: Tensor, x_ref: Tensor, z: SparseInfluence, step: Tensor) -> Tensor:
        xs, refs = z.gather(x), z.gather(x_ref)
        drop = self.distance_weight * ((xs - refs) * step - 0.5 * step.square())
        if self.cost_weight:
            params = tuple(p[z.index] for p in self._link_params(x.dtype))
            cost = self._cost_terms(xs, *params) - self._cost_terms(xs - step, *params)
            if self.centred:
                cost = cost - self._cost_slope(refs, *params) * step
            drop = drop + self.cost_weight * cost
        return drop

    def _link_params(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        return self.linear.to(dtype), self.bpr.to(dtype), self.power.to(dtype)

    def system_state(self, actions: Tensor, context: TrafficContext) -> Tensor:
        e, n, k = actions.shape
        dtype = actions.dtype
        weight = (actions * context.size.to(dtype).unsqueeze(-1)).reshape(e, n * k)
        chosen = self.packet_routes.reshape(1, n * k).expand(e, n * k)
        flow = self.system.link_flow_of(self.system.path_flow_of(chosen, weight))
        return (flow + context.background.to(dtype)) / self.capacity.to(dtype)

    def reference_state(self, context: TrafficContext) -> Tensor:
        return context.reference.to(torch.get_default_dtype())

    def influence(self, actions: Tensor, context: TrafficContext) -> SparseInfluence:
        e, n = actions.shape
        dtype = torch.get_default_dtype()
        path = self.packet_routes.unsqueeze(0).expand(e, n, -1).gather(2, actions.long().unsqueeze(-1)).squeeze(-1)
        index = self.system.path_links[path]  # [E, N, K]
        mask = self.system.path_mask[path].to(dtype)
        value = mask * context.size.to(dtype).unsqueeze(-1) / self.capacity.to(dtype)[index]
        return SparseInfluence(index=index, value=value)
