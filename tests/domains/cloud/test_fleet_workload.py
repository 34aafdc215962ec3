"""Fleet composition, candidate zones, job model and scenario generation of the cloud domain."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from guidedmarl_domains.cloud.fleet import (
    FAMILY_GIB_PER_VCPU,
    SIZE_VCPU,
    make_candidate_sets,
    make_fleet,
)
from guidedmarl_domains.cloud.scenarios import generate_scenarios, offered_load
from guidedmarl_domains.cloud.workload import (
    MAX_JOB_CPU,
    MAX_JOB_MEM,
    WorkloadConfig,
    job_moments,
    large_duration_mean_capped,
    sample_jobs,
    small_duration_mean_capped,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- fleet
def test_fleet_composition_default_mix() -> None:
    fleet = make_fleet(750, gen(0))
    assert fleet.num_servers == 750
    assert torch.bincount(fleet.family, minlength=3).tolist() == [225, 300, 225]
    size_counts = torch.bincount(fleet.size, minlength=3)
    assert size_counts.sum() == 750
    for count, share in zip(size_counts.tolist(), (0.5, 0.35, 0.15), strict=True):
        assert abs(count - share * 750) < 1
    # Capacities follow the catalogue.
    expected_cpu = torch.tensor(SIZE_VCPU)[fleet.size]
    expected_mem = expected_cpu * torch.tensor(FAMILY_GIB_PER_VCPU)[fleet.family]
    assert torch.equal(fleet.cpu, expected_cpu)
    assert torch.equal(fleet.mem, expected_mem)
    assert fleet.cpu.min() >= 4 and fleet.mem.min() >= 8
    assert fleet.total_cpu == pytest.approx(float(expected_cpu.sum()))
    text = fleet.describe()
    assert "750 servers" in text and "compute-optimised" in text and "4xlarge" in text
    assert "300" in text  # general-purpose count


def test_fleet_deterministic_and_shuffled() -> None:
    a, b, c = make_fleet(100, gen(1)), make_fleet(100, gen(1)), make_fleet(100, gen(2))
    assert torch.equal(a.cpu, b.cpu) and torch.equal(a.family, b.family)
    assert not (torch.equal(a.family, c.family) and torch.equal(a.size, c.size))


@given(m=st.integers(1, 300), seed=st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_fleet_counts_follow_mix(m: int, seed: int) -> None:
    fleet = make_fleet(m, gen(seed))
    fam = torch.bincount(fleet.family, minlength=3).tolist()
    for count, share in zip(fam, (0.3, 0.4, 0.3), strict=True):
        assert abs(count - share * m) < 1
    assert fleet.cpu.shape == fleet.mem.shape == (m,)


def test_fleet_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        make_fleet(0, gen())
    with pytest.raises(ValueError):
        make_fleet(10, gen(), family_mix=(1.0, 0.0))


# --------------------------------------------------------------------------- candidates
def check_candidates(cand: torch.Tensor, n: int, m: int, k: int) -> None:
    k_eff = min(k, m)
    assert cand.shape == (n, k_eff) and cand.dtype == torch.long
    assert cand.min() >= 0 and cand.max() < m
    # Distinct within each row.
    srt, _ = cand.sort(dim=1)
    assert (srt[:, 1:] != srt[:, :-1]).all()
    if n * k_eff >= m:
        assert torch.unique(cand).numel() == m


@given(
    n=st.integers(1, 60),
    m=st.integers(1, 60),
    k=st.integers(1, 12),
    seed=st.integers(0, 1000),
)
@settings(max_examples=150, deadline=None)
def test_candidate_sets_properties(n: int, m: int, k: int, seed: int) -> None:
    check_candidates(make_candidate_sets(n, m, k, gen(seed)), n, m, k)


def connected_components(cand: torch.Tensor, m: int) -> int:
    """Components of the bipartite agent-server graph by min-label propagation."""
    n, k = cand.shape
    label = torch.arange(m)  # server labels
    while True:
        agent_label = label[cand].amin(dim=1)  # [N]
        new = label.scatter_reduce(
            0, cand.reshape(-1), agent_label.repeat_interleave(k), reduce="amin"
        )
        if torch.equal(new, label):
            break
        label = new
    return torch.unique(label).numel()


def test_candidate_sets_large_scale_connected() -> None:
    n, m, k = 1500, 750, 8
    cand = make_candidate_sets(n, m, k, gen(3))
    check_candidates(cand, n, m, k)
    assert connected_components(cand, m) == 1
    # Every server is in roughly N*K/M = 16 zones; the coverage step bounds it below.
    degree = torch.bincount(cand.reshape(-1), minlength=m)
    assert degree.min() >= 1 and degree.float().mean() == pytest.approx(16.0)
    assert torch.equal(cand, make_candidate_sets(n, m, k, gen(3)))
    assert not torch.equal(cand, make_candidate_sets(n, m, k, gen(4)))


def test_candidate_sets_fewer_agents_than_servers() -> None:
    # N < M: each zone holds ceil(M/N) = 3 tiling servers plus 5 random ones.
    cand = make_candidate_sets(100, 300, 8, gen(5))
    check_candidates(cand, 100, 300, 8)
    assert connected_components(cand, 300) == 1


def test_candidate_sets_k_clipped() -> None:
    cand = make_candidate_sets(5, 4, 10, gen(0))
    assert cand.shape == (5, 4)
    assert (cand.sort(dim=1).values == torch.arange(4)).all()


# --------------------------------------------------------------------------- config and jobs
def test_config_validation() -> None:
    WorkloadConfig()
    with pytest.raises(ValidationError):
        WorkloadConfig(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        WorkloadConfig(mean_load=0.0)
    with pytest.raises(ValidationError):
        WorkloadConfig(mean_load=1.6)
    with pytest.raises(ValidationError):
        WorkloadConfig(large_duration_shape=1.0)
    with pytest.raises(ValidationError):
        WorkloadConfig(cycle_steps=1)
    with pytest.raises(ValidationError):
        WorkloadConfig(max_duration=5, large_duration_min=8)
    assert WorkloadConfig.model_fields["mean_load"].description


def test_job_model_bounds_and_shapes() -> None:
    cfg = WorkloadConfig()
    cpu, mem, dur = sample_jobs((200_000,), cfg, gen(0))
    assert cpu.min() > 0 and cpu.max() <= MAX_JOB_CPU
    assert mem.min() > 0 and mem.max() <= MAX_JOB_MEM
    assert dur.dtype == torch.long and dur.min() >= 1 and dur.max() <= cfg.max_duration
    ratios = torch.unique(mem / cpu)
    assert ratios.numel() >= 4  # different resource shapes
    small = cpu <= 1
    assert small.float().mean() == pytest.approx(cfg.small_job_fraction, abs=0.01)
    assert set(torch.unique(cpu).tolist()) == {0.25, 0.5, 1.0, 2.0, 4.0}
    # Heavy tail: some large jobs reach the cap.
    assert (dur == cfg.max_duration).any()


def test_job_moments_match_monte_carlo() -> None:
    cfg = WorkloadConfig()
    cpu, mem, dur = sample_jobs((1_000_000,), cfg, gen(1))
    mom = job_moments(cfg)
    d = dur.double()
    assert float(cpu.double().mean()) == pytest.approx(mom.mean_cpu, rel=0.01)
    assert float(mem.double().mean()) == pytest.approx(mom.mean_mem, rel=0.01)
    assert float(d.mean()) == pytest.approx(mom.mean_duration, rel=0.02)
    assert float((cpu.double() * d).mean()) == pytest.approx(mom.cpu_duration, rel=0.03)
    assert float((mem.double() * d).mean()) == pytest.approx(mom.mem_duration, rel=0.03)


def test_capped_duration_means_exact() -> None:
    # A tight cap matters for both classes; the formulas must account for it.
    cfg = WorkloadConfig(small_duration_mean=4.0, max_duration=10, large_duration_min=3)
    g = gen(2)
    small_cfg = cfg.model_copy(update={"small_job_fraction": 1.0})
    large_cfg = cfg.model_copy(update={"small_job_fraction": 0.0})
    _, _, ds = sample_jobs((400_000,), small_cfg, g)
    _, _, dl = sample_jobs((400_000,), large_cfg, g)
    assert float(ds.double().mean()) == pytest.approx(small_duration_mean_capped(cfg), rel=0.01)
    assert float(dl.double().mean()) == pytest.approx(large_duration_mean_capped(cfg), rel=0.01)
    # Closed form of the capped geometric mean: (1 - q^D) / p.
    assert small_duration_mean_capped(cfg) == pytest.approx((1 - 0.75**10) * 4.0)
    # Uncapped limit of the geometric part is the configured mean.
    assert small_duration_mean_capped(WorkloadConfig(max_duration=10_000)) == pytest.approx(3.0)


# --------------------------------------------------------------------------- scenarios
def small_scenario(seeds: list[int], cfg: WorkloadConfig | None = None):  # noqa: ANN201
    return generate_scenarios(
        seeds, num_agents=20, horizon=40, warmup=10, total_cpu=100.0, cfg=cfg or WorkloadConfig()
    )


def test_scenario_shapes_and_masks() -> None:
    sc = small_scenario([1, 2, 3])
    assert sc.active.shape == (3, 50, 20) and sc.active.dtype == torch.bool
    assert sc.cpu.shape == sc.mem.shape == sc.duration.shape == (3, 50, 20)
    assert sc.duration.dtype == torch.long
    assert sc.offered_load.shape == (3, 50, 2)
    assert sc.arrival_rate.shape == (3, 50) and sc.load_level.shape == (3,)
    assert (sc.warmup, sc.horizon, sc.num_steps, sc.num_agents, sc.num_envs) == (10, 40, 50, 20, 3)
    act = sc.active
    assert (sc.cpu[~act] == 0).all() and (sc.mem[~act] == 0).all()
    assert (sc.duration[~act] == 0).all()
    assert (sc.cpu[act] > 0).all() and (sc.mem[act] > 0).all() and (sc.duration[act] >= 1).all()
    cfg = WorkloadConfig()
    lo, hi = cfg.mean_load * (1 - cfg.load_spread), cfg.mean_load * (1 + cfg.load_spread)
    assert ((sc.load_level >= lo - 1e-6) & (sc.load_level <= hi + 1e-6)).all()


def test_scenario_deterministic_per_seed() -> None:
    a = small_scenario([7, 8])
    b = small_scenario([7, 8])
    c = small_scenario([8])
    for name in ("active", "cpu", "mem", "duration", "offered_load", "arrival_rate", "load_level"):
        ta, tb, tc = getattr(a, name), getattr(b, name), getattr(c, name)
        assert torch.equal(ta, tb), name
        assert torch.equal(ta[1], tc[0]), name  # independent of the rest of the batch
    assert not torch.equal(a.active[0], a.active[1])
    assert not torch.equal(a.arrival_rate[0], a.arrival_rate[1])


def test_offered_load_matches_naive() -> None:
    sc = small_scenario([11, 12])
    e_, s_, n_ = sc.active.shape
    naive = torch.zeros(e_, s_, 2, dtype=torch.float64)
    for e in range(e_):
        for s in range(s_):
            for n in range(n_):
                if sc.active[e, s, n]:
                    end = min(s + int(sc.duration[e, s, n]), s_)
                    naive[e, s:end, 0] += float(sc.cpu[e, s, n])
                    naive[e, s:end, 1] += float(sc.mem[e, s, n])
    assert torch.allclose(sc.offered_load.double(), naive, atol=1e-4)
    again = offered_load(sc.active, sc.cpu, sc.mem, sc.duration)
    assert torch.equal(again, sc.offered_load)


def test_arrival_rate_follows_formula() -> None:
    cfg = WorkloadConfig(burst_rate=0.0, daily_amplitude=0.3, cycle_steps=50, load_spread=0.0)
    n, total_cpu = 100, 400.0
    sc = generate_scenarios([3], n, horizon=200, warmup=0, total_cpu=total_cpu, cfg=cfg)
    work = job_moments(cfg).cpu_duration
    pattern = sc.arrival_rate[0].double() * work / (cfg.mean_load * total_cpu)
    assert pattern.min() >= 1 - 0.3 - 1e-5 and pattern.max() <= 1 + 0.3 + 1e-5
    assert pattern.max() > 1.25 and pattern.min() < 0.75  # the daily cycle is visible
    assert torch.allclose(pattern[:-50], pattern[50:], atol=1e-5)  # period cycle_steps
    assert float(pattern.mean()) == pytest.approx(1.0, abs=1e-4)
    # Bursts raise the rate by exactly burst_factor.
    burst = cfg.model_copy(update={"daily_amplitude": 0.0, "burst_rate": 0.2, "burst_factor": 2.0})
    rate = generate_scenarios([4], n, 200, 0, total_cpu, burst).arrival_rate[0]
    levels = torch.unique(torch.round(rate / rate.min() * 1000) / 1000)
    assert levels.tolist() == [1.0, 2.0]


def test_offered_utilisation_tracks_load_level() -> None:
    cfg = WorkloadConfig(burst_rate=0.0, cycle_steps=100)
    n, total_cpu, warmup, horizon = 300, 600.0, 300, 4000
    sc = generate_scenarios([21, 22], n, horizon, warmup, total_cpu, cfg)
    util = sc.offered_load[:, warmup:, 0].double().mean(dim=1) / total_cpu
    assert torch.allclose(util, sc.load_level.double(), rtol=0.05)
    # Realised arrivals follow the expected rate.
    arrivals = sc.active.sum(dim=2).double().mean(dim=1)
    assert torch.allclose(arrivals, sc.arrival_rate.double().mean(dim=1), rtol=0.02)


def test_offered_load_obeys_littles_law_with_bursts() -> None:
    cfg = WorkloadConfig()  # bursts on: mean load = level * mean(pattern)
    n, total_cpu, warmup, horizon = 300, 600.0, 300, 4000
    sc = generate_scenarios([31], n, horizon, warmup, total_cpu, cfg)
    mom = job_moments(cfg)
    rate = sc.arrival_rate[0, warmup:].double().mean()
    assert float(sc.offered_load[0, warmup:, 0].double().mean()) == pytest.approx(
        float(rate) * mom.cpu_duration, rel=0.05
    )
    assert float(sc.offered_load[0, warmup:, 1].double().mean()) == pytest.approx(
        float(rate) * mom.mem_duration, rel=0.05
    )
    assert math.isfinite(mom.cpu_duration)


def test_generate_scenarios_rejects_bad_input() -> None:
    cfg = WorkloadConfig()
    with pytest.raises(ValueError):
        generate_scenarios([], 10, 10, 0, 100.0, cfg)
    with pytest.raises(ValueError):
        generate_scenarios([1], 10, 0, 0, 100.0, cfg)
    with pytest.raises(ValueError):
        generate_scenarios([1], 10, 10, 0, 0.0, cfg)
