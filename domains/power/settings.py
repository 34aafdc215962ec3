"""Settings of the power dispatch domain (validated by pydantic; every field states its range)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LoadSettings(BaseModel):
    """Daily demand scenarios (docs/domains/power.md, "Demand").

    Bus b's demand in period t of a scenario is

        d_bt = d_b^nom * level * m(h_t + phase) * (1 + e_t) * (1 + eta_bt)

    with m the daily profile scaled to [``min_factor``, 1], ``level`` ~ U[``level_low``,
    ``level_high``], ``phase`` ~ U[-``phase_hours``, ``phase_hours``], e_t an AR(1) noise on
    the total (std ``aggregate_noise``, lag-one correlation ``noise_correlation``) and eta_bt
    independent per-bus noise (std ``bus_noise``), both clipped at 3 standard deviations.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_factor: float = Field(0.65, ge=0.05, le=1.0, description="night trough of the daily profile / its peak")
    level_low: float = Field(0.85, gt=0, le=2.0, description="lowest scenario peak, fraction of the case's demand")
    level_high: float = Field(1.0, gt=0, le=2.0, description="highest scenario peak, fraction of the case's demand")
    phase_hours: float = Field(1.0, ge=0, le=12, description="random shift of the daily profile (hours)")
    aggregate_noise: float = Field(0.02, ge=0, le=0.3, description="std of the AR(1) noise on total demand")
    noise_correlation: float = Field(0.7, ge=0, lt=1, description="lag-one correlation of the aggregate noise")
    bus_noise: float = Field(0.03, ge=0, le=0.3, description="std of the independent noise per bus and period")

    @model_validator(mode="after")
    def _levels_ordered(self) -> LoadSettings:
        if self.level_low > self.level_high:
            raise ValueError(f"level_low ({self.level_low}) must not exceed level_high ({self.level_high})")
        return self


class PowerSettings(BaseModel):
    """``domain_config`` of ``--domain power``.

    The case fixes N: every in-service generator with PMAX > PMIN is one agent (case30: 6,
    case118: 54, pglib_opf_case9241_pegase: 1445). See :class:`~.domain.PowerDomain` for how
    ``--agents`` is checked against it.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    case: str = Field("case30", min_length=1, description="pypower IEEE case (case30, case118, ...) or PGLib case")
    horizon: int = Field(24, ge=1, le=10_000, description="periods per episode")
    period_minutes: int = Field(60, ge=15, le=60, description="length of one period (minutes)")
    start_hour: float = Field(0.0, ge=0, lt=24, description="clock time of the first period (hours)")
    ramp_per_hour: float = Field(
        0.3, gt=0, le=10, description="ramp limit per hour, fraction of each generator's range PMAX - PMIN"
    )
    rating_scale: float = Field(
        1.0, gt=0, le=100, description="multiplies every line limit RATE_A (below 1: a more congested network)"
    )
    imbalance_weight: float = Field(
        10.0, ge=0, le=1e4, description="lambda_b: reward penalty per p.u. of |imbalance|, in units of the case price"
    )
    overload_weight: float = Field(
        50.0,
        ge=0,
        le=1e6,
        description="lambda_f: penalty per p.u. of line overload, in units of the case price (reward and reference)",
    )
    train_scenarios: int = Field(16, ge=1, le=1_000_000, description="size of the pool of training scenarios")
    balance_weight: float = Field(
        10.0,
        ge=0,
        le=1e6,
        description="weight per generator of the power-balance component of the guidance potential "
        "(0: the state is outputs and flows only, as before 2026-12-01; see docs/domains/power.md)",
    )
    line_weight: float = Field(
        1.0,
        ge=0,
        le=1e6,
        description="weight of every line-flow component f_l / F_l in the guidance potential (1: the paper's "
        "distance; larger: guidance keeps flows closer to the reference's; see docs/domains/power.md)",
    )
    overload_potential: float = Field(
        100.0,
        ge=0,
        le=1e6,
        description="lambda of the guidance potential's overload term lambda/2 sum_l relu(|f_l / F_l| - 1)^2 "
        "(0: none, the paper's quadratic distance; > 0: first-order weights add the overloaded lines' rows to the "
        "Gram-matrix path, exact-difference weights take the generic backward pass; 100 was level with 0 on "
        "case30, case118 and case300 and better on the congested case1354; see docs/domains/power.md)",
    )
    load: LoadSettings = Field(default_factory=LoadSettings)
    reference_solver: Literal["auto", "cvxpylayers", "sparse"] = Field(
        "auto",
        description="DC-OPF backend: cvxpylayers (differentiable), sparse (HiGHS/Clarabel, lazy line limits), auto",
    )
    auto_layer_max_variables: int = Field(
        400, ge=0, le=1_000_000, description="auto: cvxpylayers up to this many G x T variables, sparse above"
    )
    cache_size: int = Field(512, ge=1, le=1_000_000, description="scenarios (with their reference) kept in memory")

    @property
    def period_hours(self) -> float:
        """Length of one period in hours."""
        return self.period_minutes / 60.0
