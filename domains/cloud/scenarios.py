"""Synthetic job arrival scenarios for the cloud scheduling domain (jobs from :mod:`.workload`).

A *scenario* fixes, for every step s and every dispatcher agent n, whether the agent
receives a job and the job's demand (vCPU, GiB) and duration (steps). Scenarios are
generated up front, batched over E seeds, so an episode replays exactly the same exogenous
workload whatever the policy does, and a policy can be compared against heuristics on
identical inputs.

Arrival process: each agent independently receives a job at step s with probability

    p_s = clip(load_level * pattern_s * total_cpu / (N * E[cpu * duration]), 0, 1)

    pattern_s = (1 + daily_amplitude * sin(2 pi (s + phase) / cycle_steps))
                * (burst_factor if a burst is active at s else 1) / B

    B = 1 + (burst_factor - 1) * (1 - (1 - burst_rate) ** burst_steps)

B is the expected burst multiplier (the probability that a step lies in a burst is the
probability that one of the ``burst_steps`` preceding starts fired), so bursts move load in
time without raising its mean.

Why: in steady state the CPU held by jobs that arrived but have not finished (the *offered
load*) is, by Little's law, the arrival rate times the mean of ``cpu * duration``, i.e.
``N * p * E[cpu * duration]``; dividing by ``total_cpu`` gives the offered utilisation, so
the formula makes the mean offered CPU utilisation equal ``load_level`` (over whole daily
cycles, in expectation over bursts, and as long as p_s stays below 1). ``E[cpu * duration]`` is computed exactly from the job model,
including the caps (see :func:`job_moments`). Bursts start with probability ``burst_rate``
per step and last ``burst_steps`` steps; overlapping bursts do not stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .workload import WorkloadConfig, job_moments, sample_jobs


@dataclass
class Scenario:
    """E pre-generated workloads of S = warmup + horizon steps for N agents.

    Attributes:
        active: ``[E, S, N]`` bool, agent n receives a job at step s.
        cpu: ``[E, S, N]`` float32 vCPU demand (0 where inactive).
        mem: ``[E, S, N]`` float32 GiB demand (0 where inactive).
        duration: ``[E, S, N]`` int64 steps (>= 1 where active, 0 where inactive).
        offered_load: ``[E, S, 2]`` float32 (vCPU, GiB) held at step s by jobs with
            ``arrival <= s < arrival + duration``, i.e. the load if no job ever waited; jobs
            running past S are truncated.
        arrival_rate: ``[E, S]`` float32 expected number of arrivals at step s (N * p_s).
        load_level: ``[E]`` float32 target offered CPU utilisation of each scenario.
        warmup: steps before the episode proper (used to fill the cluster).
        horizon: steps of the episode proper.
    """

    active: Tensor
    cpu: Tensor
    mem: Tensor
    duration: Tensor
    offered_load: Tensor
    arrival_rate: Tensor
    load_level: Tensor
    warmup: int
    horizon: int

    @property
    def num_envs(self) -> int:
        """E, the number of scenarios."""
        return int(self.active.shape[0])

    @property
    def num_steps(self) -> int:
        """S = warmup + horizon."""
        return int(self.active.shape[1])

    @property
    def num_agents(self) -> int:
        """N, the number of agents."""
        return int(self.active.shape[2])


def offered_load(active: Tensor, cpu: Tensor, mem: Tensor, duration: Tensor) -> Tensor:
    """Offered (vCPU, GiB) per step of jobs given as ``[E, S, N]`` arrays: ``[E, S, 2]``.

    Difference array: each job adds its demand at its arrival step and removes it at
    ``min(arrival + duration, S)``; a cumulative sum over steps yields the load held at each
    step. Accumulated in float64 so the result matches a direct summation; memory is a few
    ``[E, S, N]`` arrays, no per-job ``[S]`` rows.
    """
    e, s, _ = active.shape
    dev = active.device
    steps = torch.arange(s, device=dev).view(1, s, 1)
    end = torch.where(active, torch.clamp(steps + duration, max=s), s)  # [E, S, N]
    flat_end = (torch.arange(e, device=dev).view(e, 1, 1) * (s + 1) + end).reshape(-1)
    channels = []
    for demand in (cpu, mem):  # the two resources
        dem = torch.where(active, demand, 0.0).double()
        diff = torch.zeros(e, s + 1, dtype=torch.float64, device=dev)
        diff[:, :s] = dem.sum(dim=2)
        diff.view(-1).index_add_(0, flat_end, -dem.reshape(-1))
        channels.append(diff.cumsum(dim=1)[:, :s])
    return torch.stack(channels, dim=-1).float()


def _arrival_pattern(
    num_steps: int, cfg: WorkloadConfig, generator: torch.Generator
) -> Tensor:
    """Daily-cycle times burst multiplier for each step: ``[S]`` float64."""
    phase = float(torch.rand((), generator=generator, dtype=torch.float64)) * cfg.cycle_steps
    steps = torch.arange(num_steps, dtype=torch.float64)
    daily = 1.0 + cfg.daily_amplitude * torch.sin(2 * math.pi * (steps + phase) / cfg.cycle_steps)
    # Burst starts are drawn from step -(burst_steps - 1) so a burst may already be running
    # at step 0 (stationary start). A burst started at t covers t .. t + burst_steps - 1.
    lead = cfg.burst_steps - 1
    starts = (torch.rand(num_steps + lead, generator=generator) < cfg.burst_rate).double()
    cs = torch.cat([torch.zeros(1, dtype=torch.float64), starts.cumsum(0)])
    # starts in window (s - burst_steps, s] <=> shifted indices s+lead-burst_steps+1 .. s+lead
    idx = torch.arange(num_steps) + lead
    in_burst = (cs[idx + 1] - cs[idx + 1 - cfg.burst_steps]) > 0
    in_burst_probability = 1.0 - (1.0 - cfg.burst_rate) ** cfg.burst_steps
    mean_multiplier = 1.0 + (cfg.burst_factor - 1.0) * in_burst_probability
    return daily * torch.where(in_burst, cfg.burst_factor, 1.0) / mean_multiplier


def generate_scenarios(
    seeds: Sequence[int],
    num_agents: int,
    horizon: int,
    warmup: int,
    total_cpu: float,
    cfg: WorkloadConfig,
    device: torch.device | str = "cpu",
) -> Scenario:
    """Generate one scenario per seed (see the module docstring for the model).

    Each seed drives its own ``torch.Generator``, so a scenario depends only on its seed,
    N, S and ``cfg`` (not on the other seeds of the batch). Every scenario's ``[S, N]``
    arrays are drawn in one go.

    Args:
        seeds: E integer seeds.
        num_agents: N >= 1.
        horizon: steps of the episode proper (>= 1).
        warmup: extra leading steps (>= 0) that fill the cluster before the episode.
        total_cpu: total vCPU of the fleet (sets the arrival rate for the target load).
        cfg: workload parameters.
        device: where the returned tensors live (generation happens on the CPU).
    """
    if len(seeds) < 1:
        raise ValueError("need at least one seed")
    if num_agents < 1 or horizon < 1 or warmup < 0:
        raise ValueError(
            f"need num_agents >= 1, horizon >= 1, warmup >= 0; got {num_agents}, {horizon}, "
            f"{warmup}"
        )
    if total_cpu <= 0:
        raise ValueError(f"total_cpu must be > 0, got {total_cpu}")
    num_steps = warmup + horizon
    work = job_moments(cfg).cpu_duration
    per_agent = total_cpu / (num_agents * work)  # arrival prob. per unit of load*pattern

    actives, cpus, mems, durs, loads, rates, levels = [], [], [], [], [], [], []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        level = cfg.mean_load * (
            1.0 + cfg.load_spread * (2.0 * float(torch.rand((), generator=gen)) - 1.0)
        )
        pattern = _arrival_pattern(num_steps, cfg, gen)
        prob = (level * pattern * per_agent).clamp(0.0, 1.0)  # [S]
        active = torch.rand(num_steps, num_agents, generator=gen) < prob.float()[:, None]
        cpu, mem, dur = sample_jobs((num_steps, num_agents), cfg, gen)
        cpu = torch.where(active, cpu, 0.0)
        mem = torch.where(active, mem, 0.0)
        dur = torch.where(active, dur, 0)
        # Per scenario, to bound the peak memory of the difference array.
        loads.append(offered_load(active[None], cpu[None], mem[None], dur[None])[0])
        actives.append(active)
        cpus.append(cpu)
        mems.append(mem)
        durs.append(dur)
        rates.append((prob * num_agents).float())
        levels.append(level)

    return Scenario(
        active=torch.stack(actives).to(device),
        cpu=torch.stack(cpus).to(device),
        mem=torch.stack(mems).to(device),
        duration=torch.stack(durs).to(device),
        offered_load=torch.stack(loads).to(device),
        arrival_rate=torch.stack(rates).to(device),
        load_level=torch.tensor(levels, dtype=torch.float32, device=device),
        warmup=warmup,
        horizon=horizon,
    )
