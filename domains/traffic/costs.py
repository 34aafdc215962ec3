"""Link cost functions of the two assignment programs, on BPR links (numpy, float64, batched ``[..., L]``).

With y = v / C the flow over capacity and t(v) = t0 (1 + b y^p):

* user equilibrium (UE, Wardrop's first principle) minimises the Beckmann potential
  B(v) = sum_l int_0^v_l t_l(u) du = sum_l t0_l (v_l + b_l C_l y_l^(p+1) / (p + 1)); its link "cost" is t;
* system optimum (SO, the second principle) minimises TSTT(v) = sum_l v_l t_l(v_l) = sum_l t0_l (v_l + b_l
  C_l y_l^(p+1)); its link cost is the marginal cost m = t + v t' = t0 (1 + (p + 1) b y^p).

Both programs are convex in the path flows, with link costs increasing in v. ``cost_and_slope`` gives
the link cost and its derivative (the Newton step of gradient projection needs it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .network import FloatArray, Network

Kind = Literal["ue", "so"]


@dataclass(frozen=True)
class LinkData:
    """BPR data of every link: t0 (min), C (veh/h), b, p, all ``[L]``."""

    t0: FloatArray
    capacity: FloatArray
    b: FloatArray
    power: FloatArray

    @classmethod
    def of(cls, net: Network) -> LinkData:
        return cls(net.free_flow_time, net.capacity, net.b, net.power)

    @property
    def slope_scale(self) -> FloatArray:
        """t0 b: the BPR term's weight (kept as a product, Braess' links have t0 = 1e-8, b = 1e9)."""
        return self.t0 * self.b

    def travel_time(self, v: FloatArray) -> FloatArray:
        return self.t0 + self.slope_scale * (v / self.capacity) ** self.power

    def cost(self, kind: Kind, v: FloatArray) -> FloatArray:
        """Link cost only (t for UE, m for SO) at flows ``v``."""
        factor = 1.0 if kind == "ue" else self.power + 1.0
        return self.t0 + factor * self.slope_scale * (np.maximum(v, 0.0) / self.capacity) ** self.power

    def cost_and_slope(self, kind: Kind, v: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(link cost, d cost / dv) at flows ``v``: t and t' for UE, m = t + v t' and m' for SO."""
        y = np.maximum(v, 0.0) / self.capacity
        p, k = self.power, self.slope_scale
        factor = 1.0 if kind == "ue" else p + 1.0
        y_pm1 = np.where(p > 1, y ** np.maximum(p - 1.0, 0.0), 1.0)
        cost = self.t0 + factor * k * y * y_pm1
        slope = factor * k * p * y_pm1 / self.capacity
        return cost, slope

    def objective(self, kind: Kind, v: FloatArray) -> FloatArray:
        """Beckmann potential (UE) or TSTT (SO) of flows ``[..., L]``: ``[...]``."""
        y = np.maximum(v, 0.0) / self.capacity
        p = self.power
        factor = 1.0 / (p + 1.0) if kind == "ue" else 1.0
        return (self.t0 * v + factor * self.slope_scale * self.capacity * y ** (p + 1.0)).sum(-1)

    def total_travel_time(self, v: FloatArray) -> FloatArray:
        """TSTT = sum_l v_l t_l(v_l), ``[...]``."""
        return (v * self.travel_time(v)).sum(-1)
