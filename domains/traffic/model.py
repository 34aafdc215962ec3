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
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def __init__(self, system: TrafficSystem) -> None:
        super().__init__(num_actions=system.k)
        self.system = system
        self.packet_routes = torch.as_tensor(system.packet_routes)  # [N, k] path index
        self.capacity = torch.as_tensor(system.net.capacity)

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
