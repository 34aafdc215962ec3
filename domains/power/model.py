"""Analytical model of the power system: normalised outputs and line flows, DC-OPF reference.

Action map (agent i, period t; per unit): an unbounded action a_i becomes the output

    p_i = lo_i + (hi_i - lo_i) sigmoid(a_i),
    lo_i = max(pmin_i, p_i^prev - R_i),   hi_i = min(pmax_i, p_i^prev + R_i),

with p^prev the previous period's output and R_i the ramp limit per period: every action
is feasible for the unit and the map is smooth (no clipping, so no zero gradients).

State x (``[E, G + L]``): the outputs over their scale, then the monitored line flows over
their limits,

    x = [ p_i / s_i  (i = 1..G),   f_l / F_l  (l = 1..L) ],   f = PTDF_gen p + f0_t,

with s_i = max(|pmin_i|, |pmax_i|) and f0_t the demand flows of the period. The reference
x_ref is the same map applied to the reference dispatch p_ref (the multi-period DC-OPF,
solved per scenario at reset and carried in the context).

Local influence (closed form, used to test the generic autograd path that guidance takes):

    dx / da_i = (hi_i - lo_i) sigmoid'(a_i) [ e_i / s_i ;  PTDF_gen[:, i] / F ],

one output component and the PTDF column of the agent's bus. ``guidance`` uses autograd
(``closed_form_influence = False``): one backward pass through ``system_state``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel, SparseInfluence


@dataclass
class PowerContext:
    """Pre-action quantities of one period, batched over E environments (per unit).

    Attributes:
        lower: ``[E, G]`` lo, lowest output reachable this period.
        span: ``[E, G]`` hi - lo (> 0).
        scale: ``[G]`` output normalisation s.
        ptdf: ``[L, G]`` monitored lines' PTDF at the generator buses.
        flow_offset: ``[E, L]`` demand flows f0 of the period.
        rate: ``[L]`` line limits F.
        reference_output: ``[E, G]`` reference dispatch of the period (exogenous).
    """

    lower: Tensor
    span: Tensor
    scale: Tensor
    ptdf: Tensor
    flow_offset: Tensor
    rate: Tensor
    reference_output: Tensor


def output_of(actions: Tensor, context: PowerContext) -> Tensor:
    """p = lo + (hi - lo) sigmoid(a): ``[E, G, 1]`` actions to ``[E, G]`` outputs (p.u.)."""
    a = actions.squeeze(-1)
    return context.lower.to(a.dtype) + context.span.to(a.dtype) * torch.sigmoid(a)


def state_of_output(p: Tensor, context: PowerContext) -> Tensor:
    """x = [p / s, (PTDF p + f0) / F] for outputs ``[E, G]``: ``[E, G + L]``."""
    dtype = p.dtype
    flows = p @ context.ptdf.to(dtype).T + context.flow_offset.to(dtype)
    return torch.cat([p / context.scale.to(dtype), flows / context.rate.to(dtype)], dim=-1)


class PowerModel(AnalyticalModel):
    """x(actions), x_ref and a closed-form z_i for the power dispatch domain (module docstring)."""

    action_kind = "continuous"
    closed_form_influence = False  # guidance goes through autograd; `influence` is the closed form

    def system_state(self, actions: Tensor, context: PowerContext) -> Tensor:
        return state_of_output(output_of(actions, context), context)

    def reference_state(self, context: PowerContext) -> Tensor:
        return state_of_output(context.reference_output.to(torch.get_default_dtype()), context)

    def influence(self, actions: Tensor, context: PowerContext) -> SparseInfluence:
        """Closed-form z_i: index ``[E, G, 1 + L]`` (own output, every line), values alike."""
        a = actions.squeeze(-1).to(torch.get_default_dtype())
        e, g = a.shape
        dtype = a.dtype
        sig = torch.sigmoid(a)
        dp = context.span.to(dtype) * sig * (1 - sig)  # [E, G]
        lines = context.rate.shape[0]
        own = dp / context.scale.to(dtype)
        flow = dp.unsqueeze(-1) * (context.ptdf.to(dtype) / context.rate.to(dtype)[:, None]).T.unsqueeze(0)  # [E, G, L]
        value = torch.cat([own.unsqueeze(-1), flow], dim=-1)
        agent = torch.arange(g).view(1, g, 1)
        line = g + torch.arange(lines).view(1, 1, lines)
        index = torch.cat([agent, line.expand(1, g, lines)], dim=-1).expand(e, g, 1 + lines)
        return SparseInfluence(index=index, value=value)
