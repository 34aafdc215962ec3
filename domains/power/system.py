"""`PowerSystem`: a case with everything precomputed once (PTDF, ramps, price scale).

Built once per domain and shared by the environments, the analytical model, the reference
program and the heuristics. Nothing here depends on a scenario.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from guidedmarl.analytical.layers import make_allocation_layer

from .cases import FloatArray, PowerCase, load_case
from .network import DCNetwork
from .settings import PowerSettings

QUADRATIC_FLOOR = 1e-9
"""Relative floor on quadratic costs where a strictly convex cost is needed (merit order)."""


def effective_quadratic(case: PowerCase) -> FloatArray:
    """Quadratic costs ($/h per p.u.^2) floored at a negligible positive value.

    PGLib costs are linear (q = 0); the merit-order water filling needs q > 0. The floor
    makes q span^2 at most ``QUADRATIC_FLOOR`` times the largest linear cost times the span.
    """
    span = case.pmax - case.pmin
    floor = QUADRATIC_FLOOR * max(float(np.abs(case.cost_l).max()), 1.0) / span
    return np.maximum(case.cost_q, floor)


def economic_dispatch(
    q: Tensor, l: Tensor, demand: Tensor, lower: Tensor, upper: Tensor
) -> Tensor:
    """Equal-incremental-cost dispatch without the network, batched: ``[B, G]``.

    Solves min sum_i q_i p_i^2 + l_i p_i s.t. sum_i p_i = demand, lower <= p <= upper with
    guidedmarl's exact water-filling layer (q > 0 required). Demand outside
    [sum lower, sum upper] is clamped into it (every unit then sits at a bound).
    """
    lo_sum, hi_sum = lower.sum(-1), upper.sum(-1)
    total = torch.minimum(torch.maximum(demand, lo_sum), hi_sum)
    layer = make_allocation_layer("waterfill")
    c = (0.5 / q).expand_as(lower).contiguous()
    return layer(c, l.expand_as(lower).contiguous(), total, lower, upper)


class PowerSystem:
    """Case data, DC network and derived constants of one domain instance.

    Attributes:
        case, network: the case (line limits times ``rating_scale``) and its :class:`DCNetwork`.
        settings: the domain settings.
        period_hours: length of a period (h).
        ramp: ``[G]`` ramp limit per period, ``ramp_per_hour * (pmax - pmin) * period_hours`` (p.u.).
        scale: ``[G]`` normalisation of outputs, max(|pmin|, |pmax|) (p.u.).
        nominal_demand: the case's net demand (p.u.), sum of bus demand minus fixed injections.
        price: pi, the average cost ($/h per p.u.) of the merit-order dispatch of the nominal
            demand; costs are divided by pi times demand in the reward, so the cost term is
            about 1 in any case (1.0 if that dispatch costs nothing).
    """

    def __init__(self, settings: PowerSettings, case: PowerCase | None = None) -> None:
        self.settings = settings
        case = case if case is not None else load_case(settings.case)
        if settings.rating_scale != 1.0:
            case = dataclasses.replace(case, branch_rate=case.branch_rate * settings.rating_scale)
        self.case = case
        self.network = DCNetwork(self.case)
        c = self.case
        self.period_hours = settings.period_hours
        self.ramp = settings.ramp_per_hour * (c.pmax - c.pmin) * self.period_hours
        self.scale = np.maximum(np.abs(c.pmin), np.abs(c.pmax))
        self.nominal_demand = c.net_demand
        if not self.nominal_demand > 0:
            raise ValueError(f"case {c.name}: net demand {self.nominal_demand * c.base_mva:.6g} MW is not positive")
        self.quadratic = effective_quadratic(c)
        p = economic_dispatch(
            torch.tensor(self.quadratic)[None],
            torch.tensor(c.cost_l)[None],
            torch.tensor([self.nominal_demand], dtype=torch.float64),
            torch.tensor(c.pmin)[None],
            torch.tensor(c.pmax)[None],
        )[0].numpy()
        cost = float(c.cost(p))
        self.price = cost / self.nominal_demand if cost > 0 else 1.0
        self._tensors: dict[torch.dtype, dict[str, Tensor]] = {}

    @property
    def num_generators(self) -> int:
        return self.case.num_generators

    @property
    def num_lines(self) -> int:
        """Monitored lines (finite limit)."""
        return self.network.num_monitored

    def tensors(self, dtype: torch.dtype) -> dict[str, Tensor]:
        """Constant per-case tensors in ``dtype`` (cached): ptdf ``[L, G]``, rate ``[L]``,
        scale, pmin, pmax, ramp, cost_q, cost_l, cost_c ``[G]``, and ramp_reach ``[L]``,
        sum_i |PTDF_li| R_i (p.u.): the most one period's ramps can move each line's flow."""
        if dtype not in self._tensors:
            c, net = self.case, self.network
            arrays = {
                "ptdf": net.ptdf_gen,
                "rate": net.rate,
                "scale": self.scale,
                "pmin": c.pmin,
                "pmax": c.pmax,
                "ramp": self.ramp,
                "cost_q": c.cost_q,
                "cost_l": c.cost_l,
                "cost_c": c.cost_c,
                "ramp_reach": np.abs(net.ptdf_gen) @ self.ramp,
            }
            self._tensors[dtype] = {k: torch.as_tensor(np.array(v), dtype=dtype) for k, v in arrays.items()}
        return self._tensors[dtype]
