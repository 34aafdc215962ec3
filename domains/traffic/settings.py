"""Settings of the traffic domain (validated by pydantic; every field states its range)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrafficSettings(BaseModel):
    """``domain_config`` of ``--domain traffic`` (docs/domains/traffic.md).

    N (``--agents``) is the number of demand packets; with N below the network's OD pairs with
    positive demand (Braess 1, Sioux Falls 528, Anaheim 1406) only the N largest OD pairs are
    controlled and the others are background traffic (see ``packets.py``).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    network: Literal["braess", "siouxfalls", "anaheim"] = Field("siouxfalls", description="shipped TNTP network")
    routes: int = Field(4, ge=1, le=16, description="k, the shortest free-flow routes each packet chooses from")
    horizon: int = Field(10, ge=1, le=10_000, description="days (periods) per episode")
    warm_start: bool = Field(
        True, description="day 0 observes the previous day as the free-flow all-or-nothing assignment (False: "
        "free-flow times and no previous route)")
    level_low: float = Field(0.9, gt=0, le=3.0, description="lowest demand level of a scenario, times base demand")
    level_high: float = Field(1.1, gt=0, le=3.0, description="highest demand level of a scenario, times base demand")
    od_noise: float = Field(0.1, ge=0, le=0.3, description="std of the independent perturbation of each OD demand")
    train_scenarios: int = Field(16, ge=1, le=1_000_000, description="size of the pool of training scenarios")
    reference_solver: Literal["auto", "structured", "cvxpylayers"] = Field(
        "auto", description="system-optimum backend: structured (gradient projection), cvxpylayers, or auto")
    auto_layer_max_paths: int = Field(
        50, ge=0, le=100_000, description="auto: cvxpylayers up to this many route-set paths, structured above")
    reference_tol: float = Field(1e-5, gt=0, le=1e-2, description="relative gap at which the reference solve stops")
    reference_max_iter: int = Field(20_000, ge=1, le=1_000_000, description="gradient-projection iterations at most")
    potential: Literal["distance", "system_cost", "cost_divergence", "mixed"] = Field(
        "distance", description="guidance potential: the paper's distance to x_ref, the SO objective TSTT / T_ff, "
        "its Bregman divergence from x_ref, or distance + cost_weight x TSTT / T_ff (docs/domains/traffic.md 3)")
    cost_weight: float = Field(1.0, gt=0, le=1e6, description="weight of TSTT / T_ff in the 'mixed' potential")
    cache_size: int = Field(512, ge=1, le=1_000_000, description="scenarios (with their reference) kept in memory")

    @model_validator(mode="after")
    def _levels_ordered(self) -> TrafficSettings:
        if self.level_low > self.level_high:
            raise ValueError(f"level_low ({self.level_low}) must not exceed level_high ({self.level_high})")
        return self
