"""Settings of the cloud domain (validated by pydantic; every field states its range)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .workload import WorkloadConfig


class CloudSettings(BaseModel):
    """``domain_config`` of ``--domain cloud``.

    Server count: M = ceil(N / agents_per_server). The default of 2 dispatchers per server
    keeps the load each dispatcher brings constant as N grows (arrivals scale with the fleet's
    capacity, see ``workload.mean_load``), so the problem at N = 1500 is the problem at
    N = 50, only larger. Zones: each agent may send jobs to K = ``candidates`` servers only,
    so its observation and action space stay the same size at any N.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    agents_per_server: float = Field(
        2.0, ge=0.01, le=1000, description="N / M, dispatchers per server (at least 0.01: at most 100 servers per dispatcher)"
    )
    candidates: int = Field(8, ge=1, le=256, description="K, candidate servers per agent (its zone)")
    horizon: int = Field(100, ge=1, le=100_000, description="steps per episode")
    warmup: int = Field(30, ge=0, le=100_000, description="steps dispatched by least-loaded before an episode")
    fleet_seed: int = Field(0, ge=0, description="seed of the fleet and of the zones (the datacentre itself)")
    overload_weight: float = Field(1.0, ge=0, le=1000, description="beta: penalty per fraction of queued servers")
    reference_layer: Literal["waterfill", "cvxpylayers"] = Field(
        "waterfill", description="convex layer solving the reference program"
    )
    reference_eta: float = Field(0.2, ge=0, le=10, description="delay price scale eta of the reference program")
    reference_max_utilisation: float = Field(1.0, gt=0, le=10, description="u_max of the reference program")
    potential: Literal["distance", "capacity"] = Field(
        "capacity",
        description="guidance potential: 'distance' = the paper's 1/2||x - x_ref||^2; 'capacity' adds "
        "overload_penalty/2 ||relu(x - 1)||^2 (committed load beyond capacity)",
    )
    overload_penalty: float = Field(100.0, ge=0, le=1e6, description="lambda of the 'capacity' potential")
    distance_weight: float = Field(1.0, ge=0, le=1e6, description="weight of the distance term of the potential")
    packing_weight: float = Field(0.0, ge=0, le=1e6, description="mu of the 'capacity' potential's packing term")
    potential_weighting: Literal["uniform", "capacity"] = Field(
        "capacity", description="weights of the servers' components in the potential: equal, or capacity / mean capacity"
    )
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)

    def num_servers(self, num_agents: int) -> int:
        """M for N agents."""
        return max(1, math.ceil(num_agents / self.agents_per_server))
