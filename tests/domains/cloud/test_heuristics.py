"""Dispatch heuristics: valid actions, documented choices, BestFit against a reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from guidedmarl_domains.cloud.fleet import make_candidate_sets, make_fleet
from guidedmarl_domains.cloud.heuristics import (
    HEURISTICS,
    BestFit,
    ClusterView,
    Heuristic,
    Jobs,
    LeastLoaded,
    RandomDispatch,
    RoundRobin,
    SimultaneousBestFit,
)
from guidedmarl_domains.cloud.simulator import ClusterSimulator


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def view_of(
    cpu_cap: list[float],
    mem_cap: list[float],
    running: list[list[list[float]]],
    queued: list[list[list[float]]] | None,
    candidates: list[list[int]],
) -> ClusterView:
    run = torch.tensor(running, dtype=torch.float32)
    return ClusterView(
        cpu_capacity=torch.tensor(cpu_cap),
        mem_capacity=torch.tensor(mem_cap),
        running=run,
        queued=torch.zeros_like(run) if queued is None else torch.tensor(queued),
        candidates=torch.tensor(candidates),
    )


def jobs_of(demands: list[list[tuple[float, float] | None]]) -> Jobs:
    active = torch.tensor([[d is not None for d in row] for row in demands])
    cpu = torch.tensor([[0.0 if d is None else d[0] for d in row] for row in demands])
    mem = torch.tensor([[0.0 if d is None else d[1] for d in row] for row in demands])
    return Jobs(active=active, cpu=cpu, mem=mem)


def random_case(seed: int, e: int = 3, n: int = 40, m: int = 15, k: int = 4):
    g = gen(seed)
    fleet = make_fleet(m, g)
    cand = make_candidate_sets(n, m, k, g)
    cap = torch.stack([fleet.cpu, fleet.mem], dim=-1)
    # Dyadic loads so every comparison is exact in floating point.
    running = torch.floor(torch.rand(e, m, 2, generator=g) * cap * 4) / 4
    queued = torch.floor(torch.rand(e, m, 2, generator=g) * cap * 2) / 4
    view = ClusterView(fleet.cpu, fleet.mem, running, queued, cand)
    active = torch.rand(e, n, generator=g) < 0.6
    cpu = torch.tensor([0.25, 0.5, 1.0, 2.0, 4.0])[torch.randint(0, 5, (e, n), generator=g)]
    mem = cpu * torch.tensor([1.0, 2.0, 4.0])[torch.randint(0, 3, (e, n), generator=g)]
    mem = mem.clamp(max=8.0)
    jobs = Jobs(active, torch.where(active, cpu, 0.0), torch.where(active, mem, 0.0))
    return view, jobs


# --------------------------------------------------------------------------- generic
def test_registry() -> None:
    assert set(HEURISTICS) == {"random", "round_robin", "least_loaded", "best_fit", "best_fit_simultaneous"}
    for cls in HEURISTICS.values():
        assert issubclass(cls, Heuristic)


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_actions_are_valid_indices(name: str) -> None:
    h = HEURISTICS[name]()
    h.reset(3, 40, gen(1))
    for seed in range(3):
        view, jobs = random_case(seed)
        act = h(view, jobs)
        assert act.shape == (3, 40) and act.dtype == torch.long
        assert act.min() >= 0 and act.max() < view.candidates.shape[1]


def test_cluster_view_of_simulator() -> None:
    sim = ClusterSimulator(torch.tensor([4.0, 8.0]), torch.tensor([8.0, 16.0]), 2)
    cand = torch.tensor([[0, 1], [1, 0], [0, 1]])
    sim.dispatch(
        torch.tensor([[0, 1, 0], [1, 1, 1]]),
        torch.tensor([[True, True, True], [True, False, False]]),
        torch.tensor([[3.0, 1.0, 2.0], [1.0, 1.0, 1.0]]),
        torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]),
        torch.tensor([[1, 1, 1], [1, 1, 1]]),
    )
    view = ClusterView.of(sim, cand)
    assert view.running.shape == view.queued.shape == (2, 2, 2)
    assert view.running[0].tolist() == [[3.0, 1.0], [1.0, 1.0]]
    assert view.queued[0].tolist() == [[2.0, 1.0], [0.0, 0.0]]
    assert view.capacity.tolist() == [[4.0, 8.0], [8.0, 16.0]]
    assert torch.equal(view.candidates, cand)


# --------------------------------------------------------------------------- simple rules
def test_random_dispatch_reproducible_and_uniform() -> None:
    view, jobs = random_case(0, e=4, n=500, k=4)
    a, b = RandomDispatch(), RandomDispatch()
    a.reset(4, 500, gen(7))
    b.reset(4, 500, gen(7))
    act = a(view, jobs)
    assert torch.equal(act, b(view, jobs))
    counts = torch.bincount(act.reshape(-1), minlength=4).double()
    assert (counts / counts.sum() - 0.25).abs().max() < 0.03
    with pytest.raises(RuntimeError):
        RandomDispatch()(view, jobs)


def test_round_robin_cycles_when_active() -> None:
    view = view_of([4.0] * 3, [8.0] * 3, [[[0.0, 0.0]] * 3], None, [[0, 1, 2], [2, 1, 0]])
    rr = RoundRobin()
    rr.reset(1, 2, gen())
    both = jobs_of([[(1.0, 1.0), (1.0, 1.0)]])
    first_only = jobs_of([[(1.0, 1.0), None]])
    seen = [rr(view, both)[0].tolist() for _ in range(4)]
    assert seen == [[0, 0], [1, 1], [2, 2], [0, 0]]
    assert rr(view, first_only)[0].tolist() == [1, 1]  # agent 1 idle: it does not advance
    assert rr(view, both)[0].tolist() == [2, 1]
    rr.reset(1, 2, gen())
    assert rr(view, both)[0].tolist() == [0, 0]


def test_least_loaded_picks_emptiest() -> None:
    # Utilisation (max over resources): s0 0.5, s1 0.25 (cpu) but 0.75 (mem) -> 0.75,
    # s2 0.375 with running + queued, s3 empty.
    view = view_of(
        [4.0, 8.0, 8.0, 4.0],
        [8.0, 16.0, 16.0, 8.0],
        [[[2.0, 1.0], [2.0, 12.0], [1.0, 1.0], [0.0, 0.0]]],
        [[[0.0, 0.0], [0.0, 0.0], [2.0, 1.0], [0.0, 0.0]]],
        [[0, 1, 2], [1, 2, 0], [1, 0, 3], [0, 0, 0]],
    )
    ll = LeastLoaded()
    ll.reset(1, 4, gen())
    act = ll(view, jobs_of([[(1.0, 1.0)] * 4]))
    assert act[0].tolist() == [2, 1, 2, 0]  # last agent: ties -> lowest index


# --------------------------------------------------------------------------- best fit
def packing_case() -> tuple[ClusterView, Jobs]:
    """s0 empty 4/8, s1 has exactly 1 vCPU / 2 GiB free, s2 has 2 vCPU / 4 GiB free."""
    view = view_of(
        [4.0, 4.0, 4.0],
        [8.0, 8.0, 8.0],
        [[[0.0, 0.0], [3.0, 6.0], [2.0, 2.0]]],
        [[[0.0, 0.0], [0.0, 0.0], [0.0, 2.0]]],
        [[0, 1, 2], [0, 1, 2], [2, 0, 1], [0, 1, 2]],
    )
    return view, jobs_of([[(1.0, 2.0), (1.0, 2.0), (2.0, 1.0), None]])


def test_best_fit_packs_tightest() -> None:
    view, jobs = packing_case()
    bf = BestFit()
    bf.reset(1, 4, gen())
    # Agent 0 takes s1 (tight fit). Agent 1 no longer fits s1: takes s2 (leftover 1/4+2/8).
    # Agent 2 (2 vCPU): s2 now has 1 free vCPU, so s0. Agent 3 is idle.
    act = bf(view, jobs)
    assert act[0, :3].tolist() == [1, 2, 1]


def test_best_fit_fallback_when_nothing_fits() -> None:
    # Neither candidate has 2 free vCPU; utilisation after placement: s0 (3+2)/4 = 1.25,
    # s1 (7+2)/8 = 1.125 -> s1.
    view = view_of(
        [4.0, 8.0], [8.0, 16.0], [[[3.0, 1.0], [7.0, 1.0]]], None, [[0, 1]]
    )
    bf = BestFit()
    bf.reset(1, 1, gen())
    assert bf(view, jobs_of([[(2.0, 1.0)]]))[0].tolist() == [1]


def reference_best_fit(view: ClusterView, jobs: Jobs) -> torch.Tensor:
    """Literal per-job loop of the documented rule, in float64."""
    cap = view.capacity.double()
    e_, n_ = jobs.active.shape
    out = torch.zeros(e_, n_, dtype=torch.long)
    for e in range(e_):
        committed = (view.running[e] + view.queued[e]).double().clone()
        for n in range(n_):
            if not jobs.active[e, n]:
                continue
            d = torch.tensor([float(jobs.cpu[e, n]), float(jobs.mem[e, n])], dtype=torch.float64)
            best, best_left, fallback, best_util = None, None, 0, None
            for i, s in enumerate(view.candidates[n].tolist()):
                free = cap[s] - committed[s]
                if bool((d <= free).all()):
                    left = float(((free - d) / cap[s]).sum())
                    if best is None or left < best_left:
                        best, best_left = i, left
                util = float(((committed[s] + d) / cap[s]).max())
                if best_util is None or util < best_util:
                    fallback, best_util = i, util
            choice = fallback if best is None else best
            out[e, n] = choice
            committed[view.candidates[n, choice]] += d
    return out


@given(seed=st.integers(0, 10_000), k=st.integers(1, 6))
@settings(max_examples=30, deadline=None)
def test_best_fit_matches_reference_and_never_overcommits(seed: int, k: int) -> None:
    view, jobs = random_case(seed, e=2, n=25, m=10, k=k)
    bf = BestFit()
    bf.reset(2, 25, gen())
    act = bf(view, jobs)
    assert torch.equal(act, reference_best_fit(view, jobs))
    # Replay: whenever some candidate had room for the job, the chosen one had room.
    cap = view.capacity.double()
    for e in range(2):
        committed = (view.running[e] + view.queued[e]).double().clone()
        for n in range(25):
            if not jobs.active[e, n]:
                continue
            d = torch.tensor([float(jobs.cpu[e, n]), float(jobs.mem[e, n])], dtype=torch.float64)
            cands = view.candidates[n]
            room = ((cap[cands] - committed[cands]) >= d).all(dim=1)
            chosen = int(cands[act[e, n]])
            if room.any():
                assert bool((committed[chosen] + d <= cap[chosen]).all())
            committed[chosen] += d


def test_best_fit_no_jobs() -> None:
    view, jobs = random_case(0)
    idle = Jobs(torch.zeros_like(jobs.active), jobs.cpu * 0, jobs.mem * 0)
    assert (BestFit()(view, idle) == 0).all()


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_heuristics_drive_simulator(name: str) -> None:
    g = gen(3)
    fleet = make_fleet(12, g)
    cand = make_candidate_sets(30, 12, 3, g)
    sim = ClusterSimulator(fleet.cpu, fleet.mem, 2, initial_pool=8)
    h = HEURISTICS[name]()
    h.reset(2, 30, g)
    for _ in range(10):
        view, jobs = random_case(int(torch.randint(0, 1000, (), generator=g)), e=2, n=30, m=12)
        act = h(ClusterView.of(sim, cand), jobs)
        server = cand[torch.arange(30), act]
        sim.dispatch(server, jobs.active, jobs.cpu, jobs.mem, torch.full_like(act, 2))
        assert (sim.running_load <= torch.stack([fleet.cpu, fleet.mem], -1) + 1e-6).all()
        sim.tick()
    in_system = sim.total_completed + sim.num_running + sim.num_waiting
    assert torch.equal(sim.total_dispatched, in_system)


def test_simultaneous_best_fit_decides_without_seeing_the_step() -> None:
    # Same cluster as test_best_fit_packs_tightest: sequential Best-Fit spreads agents 0 and 1
    # over s1 and s2; deciding at once from the start-of-step state, both pick s1 (herding).
    view, jobs = packing_case()
    sim_bf = SimultaneousBestFit()
    sim_bf.reset(1, 4, gen())
    act = sim_bf(view, jobs)
    assert act[0, :3].tolist() == [1, 1, 0]  # agent 2's candidates are [2, 0, 1]: s2 has 2 vCPU free
    # with one job per step the two rules agree
    single = jobs_of([[(1.0, 2.0), None, None, None]])
    bf = BestFit()
    bf.reset(1, 4, gen())
    assert sim_bf(view, single)[0, 0] == bf(view, single)[0, 0]
