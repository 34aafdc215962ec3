"""The route-choice environment: N demand packets (the agents) on a road network, E copies.

One step is one day: every packet chooses one of its OD pair's k routes, the link flows are
v = v_bg + Delta^T h (h the path flows the choices make), link times the BPR t(v), and the shared reward

    r_t = -TSTT_t / T_ff,    TSTT_t = sum_l v_l t_l(v_l)   (veh min / h),

with T_ff the base demand's total travel time at free-flow times (:class:`~.system.TrafficSystem`):
about -1 on an empty network and -TSTT_UE / T_ff at the user equilibrium, whatever N or the network.
Demand is fixed within an episode (one scenario), so an episode is a repeated route choice, as in
day-to-day assignment.

Observation of packet i (3 k + 4 numbers, the same at any N; tau_w = its OD pair's shortest
free-flow time), laid out route by route so that one network can score every route
(``EnvSpec.option_features`` = 3, the option-scorer actor): for each route j, the block
[free-flow time / tau_w, previous day's travel time / tau_w, 1 if it was the packet's route on the
previous day]; then the shared features: its size over the
mean packet size of the base demand; its quantile u_i among its OD pair's packets; its OD pair's
demand in this scenario over the base demand; t / T.

Day 0's "previous day" (``warm_start``, the default) is the free-flow all-or-nothing assignment,
where the method of successive averages starts: every packet on its route 0, with the travel times
that load gives. An episode is then a stretch of an ongoing day-to-day process, and day 0's
observation carries congestion as every later day's does. Without it (``warm_start = false``) day
0 shows free-flow times and no previous route: the same observation for every packet of an OD pair
in every scenario, on which a greedy policy sends whole OD pairs down one route (measured in
docs/domains/traffic.md section 7).

Global state (L + 2): the previous day's link flows over capacity, the scenario's demand level
(total over base total), t / T.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from guidedmarl.env import EnvSpec, MultiAgentVecEnv, Step

from .model import TrafficContext
from .reference import ScenarioBank
from .system import TrafficSystem

ROUTE_FEATURES = 3
"""Features per route in the observation: free-flow time, last day's time (both over tau_w), last route."""


class TrafficEnv(MultiAgentVecEnv):
    """E synchronous episodes of day-to-day route choice on one network.

    Args:
        num_envs: E.
        system: the network, routes and packets.
        bank: scenarios with their cached UE and SO flows (shared with other envs).
    """

    def __init__(self, num_envs: int, system: TrafficSystem, bank: ScenarioBank) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs, self.system, self.bank = num_envs, system, bank
        n, k, links = system.packets.num, system.k, system.num_links
        self.spec = EnvSpec(num_agents=n, obs_dim=ROUTE_FEATURES * k + 4, state_dim=links + 2,
                            horizon=system.settings.horizon, action_kind="discrete", num_actions=k,
                            option_features=ROUTE_FEATURES)
        f64 = torch.float64
        self.packet_routes = torch.as_tensor(system.packet_routes)  # [N, k]
        self.od = torch.as_tensor(system.packets.od)
        self.share = torch.as_tensor(system.packets.share, dtype=f64)
        self.quantile = torch.as_tensor(system.packets.quantile, dtype=f64)
        self.capacity = torch.as_tensor(system.net.capacity, dtype=f64)
        self.t0 = torch.as_tensor(system.net.free_flow_time, dtype=f64)
        self.b, self.power = torch.as_tensor(system.net.b, dtype=f64), torch.as_tensor(system.net.power, dtype=f64)
        tau = torch.as_tensor(system.od_free_flow, dtype=f64)[self.od]  # [N]
        self.tau = tau
        self.free_flow_obs = torch.as_tensor(system.path_free_flow, dtype=f64)[self.packet_routes] / tau[:, None]
        self.mean_size = float(system.net.demand.sum()) / n
        self.base_demand = torch.as_tensor(system.net.demand, dtype=f64)
        self._started = False
        self.t = 0

    # ----------------------------------------------------------------- physics
    def travel_time(self, flow: Tensor) -> Tensor:
        """BPR link times ``[E, L]`` (min) of link flows ``[E, L]`` (veh/h)."""
        return self.t0 * (1.0 + self.b * (flow / self.capacity) ** self.power)

    def flows_of(self, actions: Tensor) -> Tensor:
        """Link flows ``[E, L]`` (veh/h, background included) of route choices ``[E, N]``."""
        chosen = self.packet_routes.unsqueeze(0).expand(self.num_envs, -1, -1).gather(2, actions.long()[..., None])
        h = self.system.path_flow_of(chosen.squeeze(-1), self.size)
        return self.system.link_flow_of(h) + self.background

    def route_times(self, link_time: Tensor) -> Tensor:
        """Every packet's k route times ``[E, N, k]`` (min) for link times ``[E, L]``."""
        path_time = self.system.path_sum_of(link_time)  # [E, P]
        return path_time[:, self.packet_routes]

    # ----------------------------------------------------------------- MultiAgentVecEnv
    def _require(self) -> None:
        if not self._started:
            raise RuntimeError("call reset(seeds) before stepping the traffic environment")

    def reset(self, seeds: list[int]) -> Step:
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset needs {self.num_envs} seeds, got {len(seeds)}")
        planned = self.bank.get(list(seeds))
        sys_ = self.system

        def stack(arrays: list[np.ndarray]) -> Tensor:
            return torch.from_numpy(np.stack(arrays)).to(torch.float64)

        self.demand = stack([p.demand for p in planned])  # [E, W]
        self.size = self.demand[:, self.od] * self.share  # [E, N]
        background_paths = ~torch.as_tensor(sys_.packets.controlled)[torch.as_tensor(sys_.path_od)]
        self.background = sys_.link_flow_of(stack([p.ue_path for p in planned]) * background_paths)
        self.ue_path, self.so_path = stack([p.ue_path for p in planned]), stack([p.so_path for p in planned])
        self.so_link, self.ue_link = stack([p.so_link for p in planned]), stack([p.ue_link for p in planned])
        self.reference = self.so_link / self.capacity
        self.so_tstt = (self.so_link * self.travel_time(self.so_link)).sum(-1)
        self.ue_tstt = (self.ue_link * self.travel_time(self.ue_link)).sum(-1)
        self.level = self.demand.sum(-1) / self.base_demand.sum()
        self._started, self.t = True, 0
        if sys_.settings.warm_start:  # "yesterday": every packet on its free-flow shortest route (MSA's start)
            self.last_action = torch.zeros(self.num_envs, self.spec.num_agents, dtype=torch.long)
            flow = self.flows_of(self.last_action)
            self.last_x, self.last_times = flow / self.capacity, self.route_times(self.travel_time(flow))
        else:
            self.last_x = self.background / self.capacity
            self.last_times = self.route_times(self.t0.expand(self.num_envs, -1))
            self.last_action = torch.full((self.num_envs, self.spec.num_agents), -1, dtype=torch.long)
        return self._observe(torch.zeros(self.num_envs), torch.zeros(self.num_envs, dtype=torch.bool), {})

    def model_context(self) -> TrafficContext:
        self._require()
        if self.t >= self.spec.horizon:
            raise RuntimeError("episode is over: call reset(seeds) first")
        return TrafficContext(size=self.size, background=self.background, reference=self.reference)

    def step(self, actions: Tensor) -> Step:
        self._require()
        if self.t >= self.spec.horizon:
            raise RuntimeError("episode is over: call reset(seeds) first")
        actions = self.check_actions(actions)
        flow = self.flows_of(actions)
        link_time = self.travel_time(flow)
        tstt = (flow * link_time).sum(-1)
        reward = -tstt / self.system.normaliser
        x = flow / self.capacity
        info = {
            "tstt_over_so": tstt / self.so_tstt - 1.0,
            "tstt_over_ue": tstt / self.ue_tstt - 1.0,
            "max_volume_capacity": x.amax(-1),
            "distance_to_reference": 0.5 * (x - self.reference).square().sum(-1),
        }
        self.last_x, self.last_action = x, actions.long()
        self.last_times = self.route_times(link_time)
        self.t += 1
        done = torch.full((self.num_envs,), self.t >= self.spec.horizon)
        return self._observe(reward.float(), done, {key: v.float() for key, v in info.items()})

    def _observe(self, reward: Tensor, done: Tensor, info: dict[str, Tensor]) -> Step:
        e, n, k = self.num_envs, self.spec.num_agents, self.spec.num_actions
        f64 = torch.float64
        last = torch.nn.functional.one_hot(self.last_action.clamp_min(0), k).to(f64)
        last = last * (self.last_action >= 0).unsqueeze(-1).to(f64)
        clock = torch.full((e, n, 1), self.t / self.spec.horizon, dtype=f64)
        own = torch.stack([self.size / self.mean_size, self.quantile.expand(e, n),
                           (self.demand / self.base_demand)[:, self.od]], dim=-1)
        routes = torch.stack([self.free_flow_obs.expand(e, n, k), self.last_times / self.tau[:, None], last], -1)
        obs = torch.cat([routes.reshape(e, n, ROUTE_FEATURES * k), own, clock], -1)
        state = torch.cat([self.last_x, self.level[:, None], clock[:, 0]], dim=-1)
        active = torch.ones(e, n, dtype=torch.bool)
        return Step(obs=obs.float(), state=state.float(), active=active, reward=reward, done=done, info=info)
