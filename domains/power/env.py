"""The power dispatch environment: G generators (the agents) on a DC network, E copies.

One step is one period t of a day: every generator sets its output through the action map
of :mod:`.model` (within its limits and its ramp window around the previous output), the
DC power flow gives the line flows, and the shared reward is (docs/domains/power.md)

    r_t = -dh [ C(p_t) / pi  +  lambda_b |sum_i p_ti - D_t|  +  lambda_f sum_l max(0, |f_tl| - F_l) ] / D_nom,

C the generation cost ($/h), pi the case price ($/h per p.u., :class:`~.system.PowerSystem`),
D_t the net demand, f the flows, D_nom the case's nominal net demand, dh the period length
in hours: every term is a quantity in p.u. over the size of the system, so the scale of r
does not depend on the case (about -dh m(h) per period for a good dispatch, m the daily
profile), and a day's return does not depend on the period length. Up to the constant
costs c0, the return of a balanced dispatch is minus the reference program's objective
times dh / D_nom, so the reference is the best balanced dispatch. Imbalance is taken up at the
slack bus (the PTDF's reference), so flows use the outputs as they are.

Observation of agent i (``OBS_FEATURES`` = 17 numbers, the same at any N): previous output,
the window [lo, hi] and the limits, all over s_i; marginal cost at the previous output,
linear cost and cost slope over pi; size s_i over the mean size; demand now and its change
to the next period over the nominal demand; the gap D_t - sum_i p_i^prev over D_t; a
congestion signal sum_l PTDF_li u_l with u_l = sign(f_l) max(0, |f_l| / F_l - 0.9) / 0.1
on the pre-dispatch flows f = PTDF p^prev + f0_t (how raising this output loads lines
near their limit); the largest pre-dispatch line loading; t / T and the time of day
(sine, cosine).

Global state (G + L + 6): previous outputs over s, pre-dispatch flows over F, demand now,
its change, the gap, t / T and the time of day.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from guidedmarl.env import EnvSpec, MultiAgentVecEnv, Step

from .model import PowerContext
from .reference import ScenarioBank
from .system import PowerSystem

OBS_FEATURES = 17
STATE_EXTRA = 6
CONGESTION_THRESHOLD = 0.9
"""Line loading |f| / F above which a line counts in the congestion signal."""


class PowerEnv(MultiAgentVecEnv):
    """E synchronous days of dispatch on one network.

    Args:
        num_envs: E.
        system: the case with its precomputed network data.
        bank: scenarios with their cached reference dispatch (shared with other envs).
    """

    def __init__(self, num_envs: int, system: PowerSystem, bank: ScenarioBank) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.system = system
        self.bank = bank
        g, lines = system.num_generators, system.num_lines
        self.spec = EnvSpec(
            num_agents=g,
            obs_dim=OBS_FEATURES,
            state_dim=g + lines + STATE_EXTRA,
            horizon=system.settings.horizon,
            action_kind="continuous",
            action_dim=1,
        )
        self.c = system.tensors(torch.float64)
        self._size = self.c["scale"] / self.c["scale"].mean()
        self._started = False
        self.t = 0

    # ----------------------------------------------------------------- scenario data
    def _require(self) -> None:
        if not self._started:
            raise RuntimeError("call reset(seeds) before stepping the power environment")

    def window(self) -> tuple[Tensor, Tensor]:
        """(lo, hi) ``[E, G]`` (p.u.): outputs reachable this period from the previous ones."""
        self._require()
        lo = torch.maximum(self.c["pmin"], self.p_prev - self.c["ramp"])
        hi = torch.minimum(self.c["pmax"], self.p_prev + self.c["ramp"])
        return lo, hi

    def current_demand(self) -> Tensor:
        """D_t ``[E]`` (p.u.)."""
        self._require()
        return self.demand[:, self.t]

    def reference_output(self) -> Tensor:
        """Reference dispatch of the current period ``[E, G]`` (p.u.)."""
        self._require()
        if self.t >= self.spec.horizon:
            raise RuntimeError("episode is over: no reference for a period after the horizon")
        return self.reference[:, self.t]

    # ----------------------------------------------------------------- MultiAgentVecEnv
    def reset(self, seeds: list[int]) -> Step:
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset needs {self.num_envs} seeds, got {len(seeds)}")
        planned = self.bank.get(list(seeds))

        def stack(arrays: list[np.ndarray]) -> Tensor:
            return torch.from_numpy(np.stack(arrays))

        self.demand = stack([p.scenario.demand for p in planned])  # [E, T + 1]
        self.flow_offset = stack([p.scenario.flow_offset for p in planned])  # [E, T + 1, L]
        self.hours = stack([p.scenario.hours for p in planned])  # [E, T + 1]
        self.reference = stack([p.reference for p in planned])  # [E, T, G]
        self.reference_overload = stack([p.reference_overload for p in planned])  # [E, T]
        self.reference_cost = self._cost(self.reference) / (self.system.price * self.system.nominal_demand)  # [E, T]
        self._started = True
        self.t = 0
        # the day starts from the reference dispatch of its first period (a feasible,
        # ramp-consistent operating point); the first action moves away from it
        self.p_prev = self.reference[:, 0].clone()
        self.flows_pre = self.p_prev @ self.c["ptdf"].T + self.flow_offset[:, 0]
        zeros = torch.zeros(self.num_envs)
        return self._observe(zeros, torch.zeros(self.num_envs, dtype=torch.bool), {})

    def model_context(self) -> PowerContext:
        self._require()
        if self.t >= self.spec.horizon:
            raise RuntimeError("episode is over: call reset(seeds) first")
        lo, hi = self.window()
        model_tensors = self.system.tensors(torch.get_default_dtype())
        return PowerContext(
            lower=lo,
            span=hi - lo,
            scale=self.c["scale"],
            ptdf=model_tensors["ptdf"],
            flow_offset=self.flow_offset[:, self.t],
            rate=self.c["rate"],
            reference_output=self.reference[:, self.t],
            pre_dispatch_flows=self.flows_pre,
            ramp_reach=self.c["ramp_reach"],
        )

    def check_actions(self, actions: Any) -> Tensor:
        if isinstance(actions, Tensor) and not actions.is_floating_point():
            raise ValueError(f"power actions must be float tensors of shape [E, N, 1], got dtype {actions.dtype}")
        return super().check_actions(actions)

    def step(self, actions: Tensor) -> Step:
        self._require()
        if self.t >= self.spec.horizon:
            raise RuntimeError("episode is over: call reset(seeds) first")
        actions = self.check_actions(actions)
        lo, hi = self.window()
        p = lo + (hi - lo) * torch.sigmoid(actions[..., 0].to(torch.float64))
        t = self.t
        demand = self.demand[:, t]
        flows = p @ self.c["ptdf"].T + self.flow_offset[:, t]
        nominal = self.system.nominal_demand
        cost = self._cost(p) / (self.system.price * nominal)
        imbalance = (p.sum(-1) - demand).abs() / nominal
        overload = (flows.abs() - self.c["rate"]).clamp_min(0).sum(-1) / nominal
        s = self.system.settings
        reward = -self.system.period_hours * (cost + s.imbalance_weight * imbalance + s.overload_weight * overload)
        info = {
            "cost": cost,
            "cost_gap_to_reference": cost - self.reference_cost[:, t],
            "imbalance": imbalance,
            "overload": overload,
            "reference_overload": self.reference_overload[:, t] / nominal,
            "max_line_loading": (flows.abs() / self.c["rate"]).amax(-1) if flows.shape[-1] else torch.zeros_like(cost),
        }
        self.p_prev = p
        self.t += 1
        # pre-dispatch flows of the next period: this period's flows with the next demand
        nxt = min(self.t, self.flow_offset.shape[1] - 1)
        self.flows_pre = flows + self.flow_offset[:, nxt] - self.flow_offset[:, t]
        done = torch.full((self.num_envs,), self.t >= self.spec.horizon)
        return self._observe(reward.float(), done, {k: v.float() for k, v in info.items()})

    # ----------------------------------------------------------------- internals
    def _cost(self, p: Tensor) -> Tensor:
        """Generation cost ($/h) of outputs ``[..., G]``: ``[...]``."""
        c = self.c
        return (c["cost_q"] * p * p + c["cost_l"] * p + c["cost_c"]).sum(-1)

    def _observe(self, reward: Tensor, done: Tensor, info: dict[str, Tensor]) -> Step:
        c, system = self.c, self.system
        e, g = self.num_envs, system.num_generators
        t = min(self.t, self.spec.horizon)  # period shown (T after the last step)
        t_next = min(t + 1, self.demand.shape[1] - 1)
        scale, price, nominal = c["scale"], system.price, system.nominal_demand
        lo = torch.maximum(c["pmin"], self.p_prev - c["ramp"])
        hi = torch.minimum(c["pmax"], self.p_prev + c["ramp"])
        demand = self.demand[:, t]
        gap = (demand - self.p_prev.sum(-1)) / demand  # [E]
        loading = self.flows_pre / c["rate"]  # [E, L]
        hour = self.hours[:, t] * (2 * math.pi / 24.0)
        system_features = torch.stack(
            [
                demand / nominal,
                (self.demand[:, t_next] - demand) / nominal,
                gap,
                loading.abs().amax(-1) if loading.shape[-1] else torch.zeros(e, dtype=torch.float64),
                torch.full((e,), t / self.spec.horizon, dtype=torch.float64),
                torch.sin(hour),
                torch.cos(hour),
            ],
            dim=-1,
        )  # [E, 7]
        own = torch.stack(
            [
                self.p_prev / scale,
                lo / scale,
                hi / scale,
                (c["pmin"] / scale).expand(e, g),
                (c["pmax"] / scale).expand(e, g),
                (2 * c["cost_q"] * self.p_prev + c["cost_l"]) / price,
                (c["cost_l"] / price).expand(e, g),
                (2 * c["cost_q"] * scale / price).expand(e, g),
                self._size.expand(e, g),
                self._congestion(loading),
            ],
            dim=-1,
        )  # [E, G, 10]
        obs = torch.cat([own, system_features.unsqueeze(1).expand(e, g, -1)], dim=-1)
        state = torch.cat(
            [self.p_prev / scale, loading, system_features[:, [0, 1, 2, 4, 5, 6]]], dim=-1
        )
        active = torch.ones(e, g, dtype=torch.bool)
        return Step(obs=obs.float(), state=state.float(), active=active, reward=reward, done=done, info=info)

    def _congestion(self, loading: Tensor) -> Tensor:
        """sum_l PTDF_li u_l ``[E, G]`` over the lines loaded above the threshold only."""
        u = loading.sign() * ((loading.abs() - CONGESTION_THRESHOLD).clamp_min(0) / (1 - CONGESTION_THRESHOLD))
        hot = torch.nonzero((u != 0).any(0)).flatten()
        if hot.numel() == 0:
            return torch.zeros(self.num_envs, self.system.num_generators, dtype=torch.float64)
        return u[:, hot] @ self.c["ptdf"][hot]
