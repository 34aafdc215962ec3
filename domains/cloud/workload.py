"""Synthetic jobs for the cloud scheduling domain: the job model and its settings.

Job model (bimodal, independent across jobs):

* small jobs (probability ``small_job_fraction``): CPU in ``SMALL_CPU`` with weights
  ``SMALL_CPU_WEIGHTS``; memory = CPU x a GiB-per-vCPU ratio drawn from ``SMALL_RATIO``;
  duration ``T ~ Geometric(1 / small_duration_mean)`` on ``{1, 2, ...}`` (i.e. one step
  plus a geometric number of extra steps), capped at ``max_duration``.
* large jobs: CPU in ``LARGE_CPU``, ratio in ``LARGE_RATIO``, memory capped at 8 GiB;
  heavy-tailed duration ``min(round(large_duration_min * X), max_duration)`` with
  ``X ~ Pareto(large_duration_shape)`` of scale 1 (``P(X > x) = x^-shape`` for x >= 1) and
  round-half-up rounding.
* every job is finally capped at 4 vCPU and 8 GiB, half of the smallest server
  (compute-optimised 2xlarge, 8 vCPU and 16 GiB).

Scenarios (arrivals over time, batched over seeds) are built from these jobs in
:mod:`.scenarios`; :class:`WorkloadConfig` holds the settings of both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from .fleet import MIN_SERVER_CPU, MIN_SERVER_MEM

SMALL_CPU: tuple[float, ...] = (0.25, 0.5, 1.0)
"""vCPU demand values of small jobs."""
SMALL_CPU_WEIGHTS: tuple[float, ...] = (0.3, 0.4, 0.3)
"""Probabilities of ``SMALL_CPU``."""
SMALL_RATIO: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
"""GiB per vCPU of small jobs (different resource shapes)."""
SMALL_RATIO_WEIGHTS: tuple[float, ...] = (0.2, 0.3, 0.3, 0.2)
"""Probabilities of ``SMALL_RATIO``."""
LARGE_CPU: tuple[float, ...] = (2.0, 4.0)
"""vCPU demand values of large jobs."""
LARGE_CPU_WEIGHTS: tuple[float, ...] = (0.6, 0.4)
"""Probabilities of ``LARGE_CPU``."""
LARGE_RATIO: tuple[float, ...] = (1.0, 2.0, 4.0)
"""GiB per vCPU of large jobs (memory is then capped at 8 GiB)."""
LARGE_RATIO_WEIGHTS: tuple[float, ...] = (0.3, 0.4, 0.3)
"""Probabilities of ``LARGE_RATIO``."""

MAX_JOB_CPU: float = 4.0
"""Cap of a job's vCPU demand (4): half the smallest server's capacity."""
MAX_JOB_MEM: float = 8.0
"""Cap of a job's memory demand in GiB (8): half the smallest server's capacity."""
assert MAX_JOB_CPU <= MIN_SERVER_CPU and MAX_JOB_MEM <= MIN_SERVER_MEM, "every job must fit an empty server"


class WorkloadConfig(BaseModel):
    """Parameters of the arrival process and of the job model (steps, vCPU, GiB)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mean_load: float = Field(
        0.7,
        gt=0.0,
        le=1.5,
        description="Target mean CPU utilisation of the fleet from offered load (fraction "
        "of total vCPU), bursts included.",
    )
    load_spread: float = Field(
        0.2,
        ge=0.0,
        le=0.9,
        description="Each scenario's load level is uniform in mean_load * (1 +- load_spread).",
    )
    daily_amplitude: float = Field(
        0.3,
        ge=0.0,
        le=0.9,
        description="Relative amplitude of the sinusoidal daily cycle of the arrival rate.",
    )
    cycle_steps: int = Field(
        100, ge=2, description="Period of the daily cycle in steps."
    )
    burst_rate: float = Field(
        0.03, ge=0.0, le=1.0, description="Probability per step that a burst starts."
    )
    burst_factor: float = Field(
        1.8, ge=1.0, description="Arrival-rate multiplier while a burst is active."
    )
    burst_steps: int = Field(6, ge=1, description="Length of a burst in steps.")
    small_job_fraction: float = Field(
        0.85, ge=0.0, le=1.0, description="Probability that a job is small."
    )
    small_duration_mean: float = Field(
        3.0,
        ge=1.0,
        description="Mean duration of small jobs in steps (1 + geometric), before the "
        "max_duration cap.",
    )
    large_duration_min: int = Field(
        8, ge=1, description="Minimum (Pareto scale) duration of large jobs in steps."
    )
    large_duration_shape: float = Field(
        1.6, gt=1.0, description="Pareto shape of large-job durations (heavy tail)."
    )
    max_duration: int = Field(
        150, ge=1, description="Cap of every job's duration in steps."
    )

    @model_validator(mode="after")
    def _check_durations(self) -> WorkloadConfig:
        if self.max_duration < self.large_duration_min:
            raise ValueError(
                f"max_duration ({self.max_duration}) must be >= large_duration_min "
                f"({self.large_duration_min})"
            )
        return self


@dataclass(frozen=True)
class JobMoments:
    """Exact expectations of the job model (including all caps).

    Attributes:
        mean_cpu: E[cpu] in vCPU.
        mean_mem: E[mem] in GiB.
        mean_duration: E[duration] in steps.
        cpu_duration: E[cpu * duration] in vCPU-steps (CPU work of one job).
        mem_duration: E[mem * duration] in GiB-steps.
    """

    mean_cpu: float
    mean_mem: float
    mean_duration: float
    cpu_duration: float
    mem_duration: float


def _normalised(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    return [w / total for w in weights]


def _class_resource_means(
    cpus: Sequence[float],
    cpu_w: Sequence[float],
    ratios: Sequence[float],
    ratio_w: Sequence[float],
) -> tuple[float, float]:
    """E[cpu], E[mem] of one job class by enumeration, with the per-job caps."""
    mean_cpu = 0.0
    mean_mem = 0.0
    for c, wc in zip(cpus, _normalised(cpu_w), strict=True):
        for r, wr in zip(ratios, _normalised(ratio_w), strict=True):
            mean_cpu += wc * wr * min(c, MAX_JOB_CPU)
            mean_mem += wc * wr * min(c * r, MAX_JOB_MEM)
    return mean_cpu, mean_mem


def small_duration_mean_capped(cfg: WorkloadConfig) -> float:
    """E[min(T, D)] for ``T ~ Geometric(p)`` on {1, 2, ...}, ``p = 1/small_duration_mean``.

    ``E[min(T, D)] = sum_{k=1..D} P(T >= k) = sum_{k=1..D} q^(k-1) = (1 - q^D) / p``.
    """
    p = 1.0 / cfg.small_duration_mean
    q = 1.0 - p
    return (1.0 - q**cfg.max_duration) / p


def large_duration_mean_capped(cfg: WorkloadConfig) -> float:
    """E[min(Y, D)] for ``Y = floor(L * X + 1/2)``, ``X ~ Pareto(a)`` of scale 1.

    ``P(Y >= d) = P(L X >= d - 1/2) = min(1, (L / (d - 1/2))^a)``, and
    ``E[min(Y, D)] = sum_{d=1..D} P(Y >= d)``: a finite sum thanks to the cap D.
    """
    d = torch.arange(1, cfg.max_duration + 1, dtype=torch.float64)
    tail = (cfg.large_duration_min / (d - 0.5)).pow(cfg.large_duration_shape).clamp(max=1.0)
    return float(tail.sum())


def job_moments(cfg: WorkloadConfig) -> JobMoments:
    """Exact E[cpu], E[mem], E[duration], E[cpu*duration], E[mem*duration] of one job.

    Within a class (small/large) demand and duration are independent, so
    ``E[cpu * dur] = f E[cpu_s] E[dur_s] + (1 - f) E[cpu_l] E[dur_l]``.
    """
    f = cfg.small_job_fraction
    cpu_s, mem_s = _class_resource_means(
        SMALL_CPU, SMALL_CPU_WEIGHTS, SMALL_RATIO, SMALL_RATIO_WEIGHTS
    )
    cpu_l, mem_l = _class_resource_means(
        LARGE_CPU, LARGE_CPU_WEIGHTS, LARGE_RATIO, LARGE_RATIO_WEIGHTS
    )
    dur_s = small_duration_mean_capped(cfg)
    dur_l = large_duration_mean_capped(cfg)
    return JobMoments(
        mean_cpu=f * cpu_s + (1 - f) * cpu_l,
        mean_mem=f * mem_s + (1 - f) * mem_l,
        mean_duration=f * dur_s + (1 - f) * dur_l,
        cpu_duration=f * cpu_s * dur_s + (1 - f) * cpu_l * dur_l,
        mem_duration=f * mem_s * dur_s + (1 - f) * mem_l * dur_l,
    )


def _categorical(
    values: Sequence[float],
    weights: Sequence[float],
    shape: tuple[int, ...],
    generator: torch.Generator,
) -> Tensor:
    """Draw ``shape`` i.i.d. values from a finite distribution (float32, CPU)."""
    cdf = torch.tensor(_normalised(weights), dtype=torch.float64).cumsum(0).float()
    u = torch.rand(shape, generator=generator)  # float32 in [0, 1)
    idx = torch.searchsorted(cdf, u.reshape(-1), right=True).clamp_(max=len(values) - 1)
    return torch.tensor(values, dtype=torch.float32)[idx.reshape(shape)]


def sample_jobs(
    shape: tuple[int, ...], cfg: WorkloadConfig, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Sample ``shape`` independent jobs from the bimodal job model.

    Returns:
        ``(cpu, mem, duration)``: float32 vCPU, float32 GiB and int64 steps (>= 1), all of
        ``shape``, on the CPU.
    """
    small = torch.rand(shape, generator=generator) < cfg.small_job_fraction
    cpu_s = _categorical(SMALL_CPU, SMALL_CPU_WEIGHTS, shape, generator)
    ratio_s = _categorical(SMALL_RATIO, SMALL_RATIO_WEIGHTS, shape, generator)
    cpu_l = _categorical(LARGE_CPU, LARGE_CPU_WEIGHTS, shape, generator)
    ratio_l = _categorical(LARGE_RATIO, LARGE_RATIO_WEIGHTS, shape, generator)
    cpu = torch.where(small, cpu_s, cpu_l).clamp(max=MAX_JOB_CPU)
    mem = (torch.where(small, cpu_s * ratio_s, cpu_l * ratio_l)).clamp(max=MAX_JOB_MEM)

    # Small: number of Bernoulli(p) trials until the first success, in {1, 2, ...}.
    p_small = 1.0 / cfg.small_duration_mean
    if p_small >= 1.0:
        dur_s = torch.ones(shape)
    else:
        dur_s = torch.empty(shape).geometric_(p_small, generator=generator)
    # Large: Pareto(shape) of scale 1 by inversion, X = U^(-1/a) with U in (0, 1].
    u = 1.0 - torch.rand(shape, generator=generator, dtype=torch.float64)
    pareto = u.pow(-1.0 / cfg.large_duration_shape)
    dur_l = torch.floor(cfg.large_duration_min * pareto + 0.5).clamp_(max=cfg.max_duration)
    duration = torch.where(small, dur_s, dur_l.float()).clamp(1, cfg.max_duration).long()
    return cpu, mem, duration
