"""ClusterSimulator: FIFO admission with head-of-line blocking, invariants, exact loads."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from guidedmarl_domains.cloud import simulator as simmod
from guidedmarl_domains.cloud.simulator import QUEUED, RUNNING, ClusterSimulator


def one_server(cpu: float = 4.0, mem: float = 8.0, num_envs: int = 1, pool: int = 16):
    return ClusterSimulator(torch.tensor([cpu]), torch.tensor([mem]), num_envs, initial_pool=pool)


def send(sim: ClusterSimulator, jobs: list[list[tuple[int, float, float, int] | None]]):
    """Dispatch ``jobs[e][n] = (server, cpu, mem, duration)`` or None (inactive)."""
    e_, n_ = len(jobs), max(len(r) for r in jobs)
    server = torch.zeros(e_, n_, dtype=torch.long)
    active = torch.zeros(e_, n_, dtype=torch.bool)
    cpu = torch.zeros(e_, n_)
    mem = torch.zeros(e_, n_)
    dur = torch.zeros(e_, n_, dtype=torch.long)
    for e, row in enumerate(jobs):
        for n, job in enumerate(row):
            if job is not None:
                server[e, n], cpu[e, n], mem[e, n], dur[e, n] = job
                active[e, n] = True
    return sim.dispatch(server, active, cpu, mem, dur)


def no_jobs(sim: ClusterSimulator, n: int = 1):
    return send(sim, [[None] * n for _ in range(sim.num_envs)])


# --------------------------------------------------------------------------- hand cases
def test_fifo_admission_and_completion_timing() -> None:
    sim = one_server()
    # Step 0: 2 + 2 fit exactly in 4 vCPU, the 1-vCPU job waits.
    r = send(sim, [[(0, 2.0, 1.0, 2), (0, 2.0, 1.0, 1), (0, 1.0, 1.0, 1)]])
    assert r.admitted.tolist() == [2] and r.waiting.tolist() == [1]
    assert r.admitted_wait.tolist() == [0]
    assert sim.running_load[0, 0].tolist() == [4.0, 2.0]
    assert sim.queued_load[0, 0].tolist() == [1.0, 1.0]
    assert sim.queue_length.tolist() == [[1]]
    assert sim.tick().tolist() == [1]  # the duration-1 job ends after step 0
    # Step 1: the queued job starts, having waited 1 step.
    r = no_jobs(sim)
    assert r.admitted.tolist() == [1] and r.admitted_wait.tolist() == [1]
    assert r.waiting.tolist() == [0]
    assert sim.tick().tolist() == [2]  # duration-2 job (steps 0..1) and the 1-step job
    assert sim.num_running.tolist() == [0] and sim.now == 2
    assert sim.running_load.abs().sum() == 0


def test_head_of_line_blocking() -> None:
    sim = one_server()
    # A (3 vCPU, 3 steps) runs; B (2 vCPU) does not fit and blocks C (1 vCPU) which would.
    r = send(sim, [[(0, 3.0, 1.0, 3), (0, 2.0, 1.0, 1), (0, 1.0, 1.0, 1)]])
    assert r.admitted.tolist() == [1] and r.waiting.tolist() == [2]
    sim.tick()
    r = send(sim, [[(0, 0.5, 0.5, 1), None, None]])  # D also fits but is behind B
    assert r.admitted.tolist() == [0] and r.waiting.tolist() == [3]
    sim.tick()
    assert no_jobs(sim, 3).admitted.tolist() == [0]
    assert sim.tick().tolist() == [1]  # A occupied steps 0, 1, 2
    r = no_jobs(sim, 3)  # step 3: B, C, D (3.5 vCPU) all start
    assert r.admitted.tolist() == [3]
    assert r.admitted_wait.tolist() == [3 + 3 + 2]
    assert r.waiting.tolist() == [0]


def test_memory_also_blocks() -> None:
    sim = one_server(cpu=4.0, mem=8.0)
    r = send(sim, [[(0, 1.0, 6.0, 2), (0, 1.0, 4.0, 1), (0, 0.25, 1.0, 1)]])
    assert r.admitted.tolist() == [1]  # 6 + 4 GiB > 8 GiB: the second blocks the third
    assert sim.queued_load[0, 0].tolist() == [1.25, 5.0]


def test_same_step_ties_follow_agent_order() -> None:
    sim = one_server()
    send(sim, [[(0, 4.0, 1.0, 1)]])  # fill the server for step 0
    # Same step: agent 0 asks 3 vCPU, agent 1 asks 1 vCPU; agent 0 is ahead in the queue.
    r = send(sim, [[(0, 3.0, 1.0, 5), (0, 1.0, 1.0, 5)]])
    assert r.admitted.tolist() == [0]
    sim.tick()
    r = send(sim, [[(0, 4.0, 1.0, 1), None]])  # a new job arrives behind both
    assert r.admitted.tolist() == [2]  # 3 + 1 fit; the new 4-vCPU job waits
    assert sim.queued_load[0, 0, 0].item() == 4.0


def test_queued_before_new_and_servers_independent() -> None:
    sim = ClusterSimulator(torch.tensor([4.0, 8.0]), torch.tensor([8.0, 32.0]), 2, initial_pool=4)
    # Env 0 fills server 0 and queues; env 1 only uses server 1.
    send(sim, [[(0, 4.0, 1.0, 1), (0, 2.0, 1.0, 1)], [(1, 8.0, 32.0, 1), (1, 1.0, 1.0, 1)]])
    assert sim.num_waiting.tolist() == [1, 1]
    sim.tick()
    # Next step: a new 2-vCPU job on server 0 of env 0 is admitted after the queued one.
    r = send(sim, [[(0, 2.0, 1.0, 1), (1, 8.0, 1.0, 1)], [None, None]])
    assert r.admitted.tolist() == [3, 1]
    assert r.admitted_wait.tolist() == [1, 1]
    assert sim.running_load[0].tolist() == [[4.0, 2.0], [8.0, 1.0]]
    assert sim.running_load[1].tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_input_validation() -> None:
    sim = ClusterSimulator(torch.tensor([4.0, 8.0]), torch.tensor([8.0, 16.0]), 1)
    ok = dict(
        server=torch.tensor([[0, 1]]),
        active=torch.tensor([[True, False]]),
        cpu=torch.tensor([[1.0, 0.0]]),
        mem=torch.tensor([[1.0, 0.0]]),
        duration=torch.tensor([[1, 0]]),
    )
    bad_cases = [
        {"server": torch.tensor([[2, 0]])},  # out of range
        {"server": torch.tensor([[-1, 0]])},
        {"cpu": torch.tensor([[0.0, 0.0]])},  # non-positive demand
        {"mem": torch.tensor([[-1.0, 0.0]])},
        {"duration": torch.tensor([[0, 0]])},
        {"cpu": torch.tensor([[5.0, 0.0]])},  # larger than the server: would block forever
        {"active": torch.tensor([[True, False, True]])},  # shape
        {"active": torch.tensor([[1, 0]])},  # dtype
        {"server": torch.tensor([[0.0, 1.0]])},
        {"active": torch.tensor([[True, False], [True, False]])},  # wrong E
    ]
    for override in bad_cases:
        with pytest.raises(ValueError):
            sim.dispatch(**{**ok, **override})
    # Garbage in inactive entries is ignored.
    r = sim.dispatch(
        server=torch.tensor([[0, 99]]),
        active=torch.tensor([[True, False]]),
        cpu=torch.tensor([[1.0, -3.0]]),
        mem=torch.tensor([[1.0, 0.0]]),
        duration=torch.tensor([[1, -1]]),
    )
    assert r.admitted.tolist() == [1]
    with pytest.raises(ValueError):
        ClusterSimulator(torch.tensor([4.0]), torch.tensor([0.0]), 1)
    with pytest.raises(ValueError):
        ClusterSimulator(torch.tensor([4.0]), torch.tensor([8.0, 8.0]), 1)


def test_pool_growth_keeps_jobs() -> None:
    sim = ClusterSimulator(torch.tensor([4.0, 4.0]), torch.tensor([8.0, 8.0]), 2, initial_pool=2)
    assert sim.pool_size == 2
    jobs = [(n % 2, 1.0, 1.0, 3 + n % 3) for n in range(11)]
    r = send(sim, [jobs, jobs[:3]])
    assert sim.pool_size >= 11 and sim.pool_size % 2 == 0
    assert r.admitted.tolist() == [8, 3] and r.waiting.tolist() == [3, 0]
    ref = Reference([4.0, 4.0], [8.0, 8.0], 2)
    ref.dispatch([jobs, jobs[:3]])
    for _ in range(8):
        assert_matches(sim, ref)
        assert sim.tick().tolist() == ref.tick()
        jobs_now = [[(1, 2.0, 1.0, 1)] * 5, []]
        ref.dispatch(jobs_now)
        send(sim, [jobs_now[0], [None] * 5])
    assert_matches(sim, ref)
    sim.reset()
    assert sim.pool_size == 2 and sim.now == 0 and sim.num_waiting.tolist() == [0, 0]


# --------------------------------------------------------------------------- reference model
@dataclass
class RefJob:
    cpu: float
    mem: float
    remaining: int
    arrival: int


@dataclass
class Reference:
    """Straightforward per-server list implementation of the documented semantics."""

    cpu_cap: list[float]
    mem_cap: list[float]
    num_envs: int
    now: int = 0
    queues: list[list[list[RefJob]]] = field(default_factory=list)
    running: list[list[list[RefJob]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        m = len(self.cpu_cap)
        self.queues = [[[] for _ in range(m)] for _ in range(self.num_envs)]
        self.running = [[[] for _ in range(m)] for _ in range(self.num_envs)]

    def dispatch(self, jobs: list[list[tuple[int, float, float, int] | None]]):
        admitted, waits = [], []
        for e, row in enumerate(jobs):
            for job in row:
                if job is not None:
                    s, c, m, d = job
                    self.queues[e][s].append(RefJob(c, m, d, self.now))
            a = w = 0
            for s, queue in enumerate(self.queues[e]):
                used_c = sum(j.cpu for j in self.running[e][s])
                used_m = sum(j.mem for j in self.running[e][s])
                while queue and (
                    used_c + queue[0].cpu <= self.cpu_cap[s] + 1e-9
                    and used_m + queue[0].mem <= self.mem_cap[s] + 1e-9
                ):
                    j = queue.pop(0)
                    used_c += j.cpu
                    used_m += j.mem
                    self.running[e][s].append(j)
                    a += 1
                    w += self.now - j.arrival
            admitted.append(a)
            waits.append(w)
        return admitted, waits

    def tick(self) -> list[int]:
        done = []
        for e in range(self.num_envs):
            count = 0
            for s, run in enumerate(self.running[e]):
                for j in run:
                    j.remaining -= 1
                count += sum(j.remaining == 0 for j in run)
                self.running[e][s] = [j for j in run if j.remaining > 0]
            done.append(count)
        self.now += 1
        return done

    def loads(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        run = torch.tensor(
            [[[sum(j.cpu for j in r), sum(j.mem for j in r)] for r in env] for env in self.running],
            dtype=torch.float64,
        )
        que = torch.tensor(
            [[[sum(j.cpu for j in q), sum(j.mem for j in q)] for q in env] for env in self.queues],
            dtype=torch.float64,
        )
        qlen = torch.tensor([[len(q) for q in env] for env in self.queues])
        return run, que, qlen


def recompute_from_pool(sim: ClusterSimulator) -> tuple[torch.Tensor, torch.Tensor]:
    """Running and queued loads by an explicit loop over the pool."""
    e_, m_ = sim.num_envs, sim.num_servers
    run = torch.zeros(e_, m_, 2, dtype=torch.float64)
    que = torch.zeros(e_, m_, 2, dtype=torch.float64)
    for e in range(e_):
        for j in range(sim.pool_size):
            status = int(sim._status[e, j])
            s = int(sim._server[e, j])
            if status == RUNNING:
                run[e, s] += sim._demand[e, j]
            elif status == QUEUED:
                que[e, s] += sim._demand[e, j]
    return run, que


def assert_matches(sim: ClusterSimulator, ref: Reference) -> None:
    run, que, qlen = ref.loads()
    assert torch.allclose(sim.running_load.double(), run, atol=1e-6)
    assert torch.allclose(sim.queued_load.double(), que, atol=1e-6)
    assert torch.equal(sim.queue_length, qlen)
    assert sim.num_waiting.tolist() == qlen.sum(dim=1).tolist()
    assert sim.num_running.tolist() == [sum(len(r) for r in env) for env in ref.running]


job_strategy = st.one_of(
    st.none(),
    st.tuples(
        st.integers(0, 3),
        st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0, 4.0]),
        st.sampled_from([0.25, 1.0, 2.0, 4.0, 8.0]),
        st.integers(1, 4),
    ),
)


@given(
    num_envs=st.integers(1, 3),
    num_servers=st.integers(1, 4),
    num_agents=st.integers(1, 6),
    stream=st.lists(
        st.lists(st.lists(job_strategy, min_size=6, max_size=6), min_size=3, max_size=3),
        min_size=1,
        max_size=12,
    ),
    pool=st.sampled_from([1, 2, 8]),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_random_stream_matches_reference_and_invariants(
    num_envs: int,
    num_servers: int,
    num_agents: int,
    stream: list,
    pool: int,
    data: st.DataObject,
) -> None:
    caps = data.draw(
        st.lists(
            st.sampled_from([(4.0, 8.0), (8.0, 16.0), (4.0, 32.0)]),
            min_size=num_servers,
            max_size=num_servers,
        )
    )
    cpu_cap = [c for c, _ in caps]
    mem_cap = [m for _, m in caps]
    sim = ClusterSimulator(
        torch.tensor(cpu_cap), torch.tensor(mem_cap), num_envs, initial_pool=pool
    )
    ref = Reference(cpu_cap, mem_cap, num_envs)
    capacity = torch.tensor(caps, dtype=torch.float32)
    for step_jobs in stream:
        jobs = [
            [
                None if j is None else (j[0] % num_servers, j[1], j[2], j[3])
                for j in step_jobs[e][:num_agents]
            ]
            for e in range(num_envs)
        ]
        r = send(sim, jobs)
        admitted, waits = ref.dispatch(jobs)
        assert r.admitted.tolist() == admitted
        assert r.admitted_wait.tolist() == waits
        assert r.waiting.tolist() == sim.num_waiting.tolist()
        assert_matches(sim, ref)
        assert (sim.running_load <= capacity + 1e-6).all()
        run, que = recompute_from_pool(sim)
        assert torch.allclose(sim.running_load.double(), run, atol=1e-6)
        assert torch.allclose(sim.queued_load.double(), que, atol=1e-6)
        assert torch.equal(
            sim.total_dispatched, sim.total_completed + sim.num_running + sim.num_waiting
        )
        assert sim.tick().tolist() == ref.tick()
        assert torch.equal(
            sim.total_dispatched, sim.total_completed + sim.num_running + sim.num_waiting
        )


def test_order_compaction_preserves_fifo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simmod, "_ORDER_LIMIT", 64)
    sim = one_server()
    ref = Reference([4.0], [8.0], 1)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        row = []
        for _ in range(5):
            if torch.rand((), generator=g) < 0.4:
                row.append((0, float(torch.randint(1, 5, (), generator=g)) / 2, 1.0, 2))
            else:
                row.append(None)
        r = send(sim, [row])
        admitted, _ = ref.dispatch([row])
        assert r.admitted.tolist() == admitted
        assert_matches(sim, ref)
        sim.tick()
        ref.tick()
    assert sim._next_order < 64  # 200 order numbers were handed out: compaction ran
