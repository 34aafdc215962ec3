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

one output component and the PTDF column of the agent's bus.

Guidance (``LinearOutputModel``): x is linear in the outputs and x - x_ref = A (p - p_ref)
(the demand flows cancel), so the weights need only the G x G Gram matrix

    M = A^T W A = diag(1 / s^2) + w_f PTDF^T diag(1 / F^2) PTDF  (+ w_b / (sum s)^2 1 1^T),

computed once per network in float64 (about 1 s for case9241's 16,049 x 1,445 PTDF) and
reused every step: one G x G product per step instead of three passes over the L x G PTDF
(docs/domains/power.md, section 12). ``gram_guidance = False`` restores the backward pass
through ``system_state``; both give the same weights (tests/domains/power/test_env_model.py).

Balance component (``balance_weight`` > 0): x gets one more component, the total output
over the total scale, b = sum_i p_i / sum_i s_i, whose reference sum_i p_ref,i / sum_i s_i
is the period's net demand on the same scale (the reference is balanced), and the potential
weighs it by w_b = ``balance_weight`` x G (every other component weight 1). Why: the
distance between outputs counts a shortfall spread over many units as a sum of small
squares, while the reward charges the net imbalance |sum_i p_i - D| ten times the price of
energy; measured on case118, all of DG-PG's gap to the reference was imbalance
(docs/domains/power.md). Each agent's influence on b is (hi_i - lo_i) sigmoid'(a_i) / sum s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from guidedmarl.analytical.linear_outputs import LinearOutputModel
from guidedmarl.analytical.model import SparseInfluence


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
        pre_dispatch_flows: ``[E, L]`` flows of the previous outputs with this period's demand,
            PTDF p^prev + f0 (optional; with ``ramp_reach`` it lets the overload term skip the
            lines no action of this period can take to their limit).
        ramp_reach: ``[L]`` sum_i |PTDF_li| R_i, the most this period's ramps can move a flow.
    """

    lower: Tensor
    span: Tensor
    scale: Tensor
    ptdf: Tensor
    flow_offset: Tensor
    rate: Tensor
    reference_output: Tensor
    pre_dispatch_flows: Tensor | None = None
    ramp_reach: Tensor | None = None


def output_of(actions: Tensor, context: PowerContext) -> Tensor:
    """p = lo + (hi - lo) sigmoid(a): ``[E, G, 1]`` actions to ``[E, G]`` outputs (p.u.)."""
    a = actions.squeeze(-1)
    return context.lower.to(a.dtype) + context.span.to(a.dtype) * torch.sigmoid(a)


def state_of_output(p: Tensor, context: PowerContext) -> Tensor:
    """x = [p / s, (PTDF p + f0) / F] for outputs ``[E, G]``: ``[E, G + L]``."""
    dtype = p.dtype
    flows = p @ context.ptdf.to(dtype).T + context.flow_offset.to(dtype)
    return torch.cat([p / context.scale.to(dtype), flows / context.rate.to(dtype)], dim=-1)


class PowerModel(LinearOutputModel):
    """x(actions), x_ref and a closed-form z_i for the power dispatch domain (module docstring).

    Args:
        balance_weight: w_b / G of the balance component (0: no balance component, x = [p/s, f/F]).
        num_generators, num_lines: G and L, for the component weights.
        line_weight: w_f, the weight of every line-flow component (1: the paper's distance).
    """

    action_kind = "continuous"
    closed_form_influence = False  # the generic path goes through autograd; `influence` is the closed form

    def __init__(
        self, balance_weight: float = 0.0, num_generators: int = 0, num_lines: int = 0, line_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.balance_weight = balance_weight
        self.line_weight = line_weight
        self.num_generators = num_generators
        if balance_weight > 0 or line_weight != 1.0:
            weights = torch.ones(num_generators + num_lines + (1 if balance_weight > 0 else 0))
            weights[num_generators : num_generators + num_lines] = line_weight
            if balance_weight > 0:
                weights[-1] = balance_weight * num_generators
            self.component_weights = weights
        self._gram_key: tuple[Tensor, Tensor, Tensor] | None = None
        self._gram: Tensor | None = None

    # ----------------------------------------------------------- LinearOutputModel
    def outputs(self, actions: Tensor, context: PowerContext) -> Tensor:
        return output_of(actions, context)

    def output_slopes(self, actions: Tensor, context: PowerContext) -> Tensor:
        sig = torch.sigmoid(actions.squeeze(-1))
        return context.span.to(sig.dtype) * sig * (1 - sig)

    def reference_outputs(self, context: PowerContext) -> Tensor:
        return context.reference_output

    def gram(self, context: PowerContext) -> Tensor:
        """M ``[G, G]`` float64 (module docstring), cached while the network tensors are the same objects."""
        key = (context.ptdf, context.rate, context.scale)
        if self._gram is None or self._gram_key is None or any(a is not b for a, b in zip(key, self._gram_key)):
            sensitivity = context.ptdf.double() / context.rate.double()[:, None]  # [L, G], d(f/F)/dp
            m = self.line_weight * (sensitivity.T @ sensitivity)
            m.diagonal().add_(context.scale.double().square().reciprocal())
            if self.balance_weight > 0:
                m.add_(self.balance_weight * m.shape[0] / float(context.scale.double().sum()) ** 2)
            self._gram_key, self._gram = key, m
        return self._gram

    def _with_balance(self, x: Tensor, p: Tensor, context: PowerContext) -> Tensor:
        if self.balance_weight <= 0:
            return x
        total = p.sum(-1, keepdim=True) / context.scale.to(p.dtype).sum()
        return torch.cat([x, total], dim=-1)

    def system_state(self, actions: Tensor, context: PowerContext) -> Tensor:
        p = output_of(actions, context)
        return self._with_balance(state_of_output(p, context), p, context)

    def reference_state(self, context: PowerContext) -> Tensor:
        p = context.reference_output.to(torch.get_default_dtype())
        return self._with_balance(state_of_output(p, context), p, context)

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
        if self.balance_weight > 0:
            balance = (dp / context.scale.to(dtype).sum()).unsqueeze(-1)  # [E, G, 1]
            value = torch.cat([value, balance], dim=-1)
            index = torch.cat([index, torch.full((e, g, 1), g + lines)], dim=-1)
        return SparseInfluence(index=index, value=value)


class OverloadAwarePowerModel(PowerModel):
    """:class:`PowerModel` whose potential also charges flows beyond their limits.

    phi = sum_j w_j [ 1/2 (x_j - x_ref,j)^2 ] + lambda/2 sum_l w_l relu(|x_l| - 1)^2 over the line
    components x_l = f_l / F_l. Why: an LP reference dispatch puts congested lines exactly at their
    limit, where the reward's overload charge (``overload_weight`` per p.u. beyond F) starts, so
    the distance alone pushes a flow above the limit as gently as below it.

    The extra term psi is not quadratic in the outputs. First-order weights keep the Gram path with
    its output gradient h = lambda w_f sum_l relu(|x_l| - 1) sign(x_l) PTDF[l] / F_l
    (:meth:`nonquadratic_gradient`): one product of the outputs with the PTDF for the flows, then
    only the rows of the lines beyond their limits. Lines that no action of the period can take to
    their limit (:meth:`reachable_lines`, from the pre-dispatch flows and the ramps) are left out of
    that product. Exact-difference weights stay on the Gram path too: the quadratic part from M,
    the overload part from :meth:`nonquadratic_exact_drop` over the lines it can touch.
    """

    nonquadratic_potential = True
    REACH_MARGIN = 1e-4
    """Relative margin below the limit at which :meth:`reachable_lines` still keeps a line."""

    def __init__(self, overload_potential: float, balance_weight: float = 0.0, num_generators: int = 0,
                 num_lines: int = 0, line_weight: float = 1.0) -> None:  # fmt: skip
        super().__init__(balance_weight, num_generators, num_lines, line_weight)
        self.overload_potential = overload_potential
        mask = torch.zeros(num_generators + num_lines + (1 if balance_weight > 0 else 0))
        mask[num_generators : num_generators + num_lines] = 1.0
        self.line_mask = mask
        self._rows_cache: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self._sens_max_cache: tuple[Tensor, Tensor] | None = None

    def _terms(self, x: Tensor, x_ref: Tensor, mask: Tensor) -> Tensor:
        over = torch.relu(x.abs() - 1.0)
        return 0.5 * (x - x_ref).square() + 0.5 * self.overload_potential * mask * over.square()

    def potential_terms(self, x: Tensor, x_ref: Tensor) -> Tensor:
        """Elementwise over the full state ``[..., D]`` (the line mask is indexed by component)."""
        return self._terms(x, x_ref, self.line_mask.to(x.dtype))

    def potential_gradient(self, x: Tensor, x_ref: Tensor) -> Tensor:
        over = torch.relu(x.abs() - 1.0) * torch.sign(x)
        return (x - x_ref) + self.overload_potential * self.line_mask.to(x.dtype) * over

    def reachable_lines(self, context: PowerContext) -> Tensor | None:
        """Mask ``[L]`` of the lines some environment's flow may reach its limit in this period.

        Every output moves at most its ramp R_i from the previous one, so a flow lies within
        ramp_reach of its pre-dispatch value: a line with |f_pre| + reach below its limit in every
        environment cannot overload, and its overload term and gradient are zero whatever the
        actions. The relative margin ``REACH_MARGIN`` keeps lines whose flow float rounding could
        put at the limit. None without the context fields (every line is then computed).
        """
        if context.pre_dispatch_flows is None or context.ramp_reach is None:
            return None
        rate = context.rate.to(torch.float64)
        reach = context.pre_dispatch_flows.to(torch.float64).abs() + context.ramp_reach.to(torch.float64)
        return (reach >= rate * (1.0 - self.REACH_MARGIN)).any(0)

    def _line_rows(self, context: PowerContext) -> tuple[Tensor, Tensor]:
        """(line indices ``[K]``, their PTDF rows ``[K, G]``): a cached superset of the reachable lines.

        The rows are gathered again only when a reachable line is missing from the cache, or
        when the cache holds more than twice the lines needed now: with the slowly changing
        loading of a day the copy is rare and the product reads a fraction of the PTDF.
        """
        ptdf = context.ptdf
        need = self.reachable_lines(context)
        if need is None:
            return torch.arange(ptdf.shape[0]), ptdf
        limit = 2 * max(int(need.sum()), 1)
        if self._rows_cache is not None and self._rows_cache[0] is ptdf:
            held = self._rows_cache[1]
            merged = need | held
            if bool(merged.eq(held).all()) and int(held.sum()) <= limit:  # the cache covers what is needed
                return self._rows_cache[2], self._rows_cache[3]
            if int(merged.sum()) <= limit:
                need = merged
        lines = need.nonzero().squeeze(1)
        rows = ptdf.index_select(0, lines)
        self._rows_cache = (ptdf, need, lines, rows)
        return lines, rows

    def nonquadratic_gradient(self, actions: Tensor, context: PowerContext) -> Tensor:
        """h ``[E, G]`` (class docstring): the overload term's gradient in the outputs (p.u.).

        Flows are computed for the reachable lines only (:meth:`reachable_lines`); the others
        contribute zero.
        """
        p = output_of(actions, context)
        lines, ptdf = self._line_rows(context)
        rate = context.rate.to(ptdf.dtype)[lines]
        offset = context.flow_offset.to(ptdf.dtype)[:, lines]
        x_lines = (p.to(ptdf.dtype) @ ptdf.T + offset) / rate  # [E, K]
        over = torch.relu(x_lines.abs() - 1.0) * torch.sign(x_lines)
        hit = over.ne(0).any(0).nonzero().squeeze(1)  # lines beyond their limit in some environment
        scale = self.overload_potential * self.line_weight
        return (scale * over[:, hit] / rate[hit]) @ ptdf[hit]

    EXACT_LINE_CHUNK = 512
    """Lines per pass of :meth:`nonquadratic_exact_drop` (an ``[E, G, chunk]`` block each)."""

    def nonquadratic_exact_drop(self, actions: Tensor, context: PowerContext, sigma: Tensor) -> Tensor:
        """psi(x) - psi(x - A_i sigma_i) ``[E, G]`` for the overload term (the Gram path's exact difference).

        Moving agent i's output back by sigma_i moves line l's component x_l = f_l / F_l by
        PTDF_li sigma_i / F_l. A line adds to the difference only where |x_l| > 1 or
        |x_l - PTDF_li sigma_i / F_l| > 1, so the lines with max_e |x_l| + max_i |PTDF_li / F_l|
        max |sigma| below 1 are skipped: their two terms are zero (a bound, not a screen by ramps,
        since x - A_i sigma_i is the linearised step and need not be a reachable dispatch). The
        rest go in chunks of ``EXACT_LINE_CHUNK`` lines, in the PTDF's dtype.
        """
        ptdf = context.ptdf
        dtype = ptdf.dtype
        rate = context.rate.to(dtype)
        p = output_of(actions, context).to(dtype)
        x_lines = (p @ ptdf.T + context.flow_offset.to(dtype)) / rate  # [E, L]
        sens_max = self._sensitivity_max(ptdf, rate)  # [L], max_i |PTDF_li| / F_l
        step_max = float(sigma.abs().max()) if sigma.numel() else 0.0
        bound = x_lines.abs().amax(0) + sens_max * step_max
        lines = (bound > 1.0 - 1e-9).nonzero().squeeze(1)
        e, g = sigma.shape
        drop = sigma.new_zeros((e, g), dtype=dtype)
        if lines.numel() == 0:
            return drop
        sig = sigma.to(dtype)
        scale = 0.5 * self.overload_potential * self.line_weight
        for part in lines.split(self.EXACT_LINE_CHUNK):
            x_k = x_lines[:, part]  # [E, K]
            sens = (ptdf.index_select(0, part) / rate[part, None]).T  # [G, K]
            now = torch.relu(x_k.abs() - 1.0).square().sum(-1, keepdim=True)  # [E, 1]
            moved = x_k.unsqueeze(1) - sig.unsqueeze(-1) * sens.unsqueeze(0)  # [E, G, K]
            drop += scale * (now - torch.relu(moved.abs() - 1.0).square().sum(-1))
        return drop

    def _sensitivity_max(self, ptdf: Tensor, rate: Tensor) -> Tensor:
        """max_i |PTDF_li| / F_l ``[L]``, kept while the PTDF tensor is the same object."""
        cached = self._sens_max_cache
        if cached is None or cached[0] is not ptdf or cached[1].dtype != ptdf.dtype:
            cached = (ptdf, ptdf.abs().amax(1) / rate)
            self._sens_max_cache = cached
        return cached[1]

    def sparse_potential_drop(self, x: Tensor, x_ref: Tensor, z: SparseInfluence, step: Tensor) -> Tensor:
        xg, rg = z.gather(x), z.gather(x_ref)
        mask = self.line_mask.to(x.dtype)[z.index]
        return self._terms(xg, rg, mask) - self._terms(xg - step, rg, mask)
