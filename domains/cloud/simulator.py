"""Batched discrete-time cluster simulator with per-server FIFO queues.

E independent copies of the same fleet of M servers advance in lock step. Jobs live in a
*pool* of J slots per environment (``[E, J]`` tensors); a slot is free, queued or running.
The pool doubles when an environment runs out of free slots.

One environment step is ``dispatch(...)`` followed by ``tick()``:

* ``dispatch`` appends the new jobs to the back of their servers' queues (jobs of the same
  step ordered by agent index) and then *admits* jobs: on every server, the longest prefix
  of its FIFO queue whose cumulative vCPU and GiB fit the server's free capacity
  (capacity minus running load) starts running. Head-of-line blocking: a job that does not
  fit stops everything behind it on that server, even jobs that would fit.
* ``tick`` ends the step: running jobs' remaining time drops by one and jobs reaching zero
  complete, releasing their capacity for the next ``dispatch``.

A job admitted at step t with duration d therefore occupies its server during steps
``t .. t + d - 1``; its waiting time is ``t - arrival`` steps. Jobs still queued from earlier
steps are always ahead of new arrivals in the FIFO order.

Admission is vectorised: queued jobs are sorted by (environment, server, enqueue order),
segmented cumulative sums of their demands are compared to the servers' free capacity, and
since demands are positive the cumulative sums are monotone, so "cumulative demand fits" is
exactly the FIFO prefix. Per-server loads are kept up to date incrementally (each enqueue,
admission and completion adds or removes only the jobs that changed, never a pass over the
whole pool) in float64: exact for the workload's dyadic demands, and for arbitrary demands
the rounding error stays many orders of magnitude below the capacity test's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

FREE: int = 0
"""Slot status: unused."""
QUEUED: int = 1
"""Slot status: job waiting in its server's queue."""
RUNNING: int = 2
"""Slot status: job running on its server."""

_FIT_EPS: float = 1e-9
"""Absolute tolerance (vCPU or GiB) of the capacity test, against float rounding."""
_ORDER_LIMIT: int = 1 << 31
"""Enqueue order numbers stay below this so (segment, order) packs into one int64 key."""


@dataclass
class DispatchResult:
    """Outcome of one :meth:`ClusterSimulator.dispatch`, per environment.

    Attributes:
        admitted: ``[E]`` int64 jobs started during this dispatch.
        admitted_wait: ``[E]`` int64 sum over those jobs of their waiting time in steps.
        waiting: ``[E]`` int64 jobs left in queues after admission.
    """

    admitted: Tensor
    admitted_wait: Tensor
    waiting: Tensor


class ClusterSimulator:
    """E synchronous copies of an M-server cluster with FIFO queues (see module docstring).

    Args:
        cpu_capacity: ``[M]`` vCPU capacity of each server.
        mem_capacity: ``[M]`` GiB capacity of each server.
        num_envs: E.
        initial_pool: initial job slots per environment J (doubles on demand).
        validate: check ``dispatch`` inputs (costs a few host syncs; keep on unless profiled).
    """

    def __init__(
        self,
        cpu_capacity: Tensor,
        mem_capacity: Tensor,
        num_envs: int,
        initial_pool: int = 1024,
        validate: bool = True,
    ) -> None:
        if cpu_capacity.ndim != 1 or cpu_capacity.shape != mem_capacity.shape:
            raise ValueError(
                "cpu_capacity and mem_capacity must both have shape [M], got "
                f"{tuple(cpu_capacity.shape)} and {tuple(mem_capacity.shape)}"
            )
        if cpu_capacity.numel() < 1:
            raise ValueError("need at least one server")
        if (cpu_capacity <= 0).any() or (mem_capacity <= 0).any():
            raise ValueError("server capacities must be positive")
        if num_envs < 1 or initial_pool < 1:
            raise ValueError(
                f"num_envs and initial_pool must be >= 1, got {num_envs}, {initial_pool}"
            )
        if num_envs * cpu_capacity.numel() >= (1 << 32):
            raise ValueError("num_envs * num_servers must be < 2**32 (admission sort key)")
        self.device = cpu_capacity.device
        self.num_envs = int(num_envs)
        self.num_servers = int(cpu_capacity.shape[0])
        self.validate = validate
        # [M, 2] (vCPU, GiB), float64 for exact accounting.
        self.capacity = torch.stack([cpu_capacity, mem_capacity], dim=-1).to(torch.float64)
        self._initial_pool = int(initial_pool)
        self.reset()

    # ------------------------------------------------------------------ state management
    def reset(self) -> None:
        """Empty every queue and server, shrink the pool back, and set the clock to 0."""
        e, j = self.num_envs, self._initial_pool
        dev = self.device
        self._server = torch.zeros(e, j, dtype=torch.long, device=dev)
        self._demand = torch.zeros(e, j, 2, dtype=torch.float64, device=dev)
        self._remaining = torch.zeros(e, j, dtype=torch.long, device=dev)
        self._status = torch.zeros(e, j, dtype=torch.int8, device=dev)
        self._order = torch.zeros(e, j, dtype=torch.long, device=dev)
        self._arrival = torch.zeros(e, j, dtype=torch.long, device=dev)
        self._next_order = 0
        self._now = 0
        self.total_dispatched = torch.zeros(e, dtype=torch.long, device=dev)
        self.total_completed = torch.zeros(e, dtype=torch.long, device=dev)
        # [E, M, 5] float64: running (vCPU, GiB), queued (vCPU, GiB), queue length
        self._loads = torch.zeros(e, self.num_servers, 5, dtype=torch.float64, device=dev)
        # [E, M] servers whose admission outcome may have changed since the last admission:
        # released capacity, or arrivals at an empty queue. Otherwise a server's queue head is
        # still blocked (same free capacity) and new arrivals wait behind it (FIFO).
        self._dirty = torch.zeros(e, self.num_servers, dtype=torch.bool, device=dev)

    _STATE = ("_server", "_demand", "_remaining", "_status", "_order", "_arrival", "_next_order", "_now",
              "total_dispatched", "total_completed", "_loads", "_dirty")  # fmt: skip
    """Everything that changes as the simulation runs (the capacities do not)."""

    def snapshot(self) -> dict[str, object]:
        """A copy of the simulation's state, to :meth:`restore` later (e.g. after a warm-up)."""
        return {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in ((k, getattr(self, k)) for k in self._STATE)}

    def restore(self, state: dict[str, object]) -> None:
        """Return to a :meth:`snapshot` (the snapshot itself stays unchanged, for the next restore)."""
        for key in self._STATE:
            value = state[key]
            setattr(self, key, value.clone() if isinstance(value, Tensor) else value)

    @property
    def pool_size(self) -> int:
        """J, job slots per environment."""
        return int(self._status.shape[1])

    def _grow(self, min_free: int) -> None:
        """Double the pool until every environment has at least ``min_free`` free slots."""
        free_now = int((self._status == FREE).sum(dim=1).min())
        old = self.pool_size
        new = old
        while new - old + free_now < min_free:
            new *= 2
        extra = new - old
        if extra == 0:
            return

        def pad(t: Tensor) -> Tensor:
            shape = (t.shape[0], extra) + tuple(t.shape[2:])
            return torch.cat([t, torch.zeros(shape, dtype=t.dtype, device=t.device)], dim=1)

        self._server = pad(self._server)
        self._demand = pad(self._demand)
        self._remaining = pad(self._remaining)
        self._status = pad(self._status)
        self._order = pad(self._order)
        self._arrival = pad(self._arrival)

    def _compact_orders(self) -> None:
        """Renumber queued jobs' enqueue orders 0.. (keeping their order) to avoid overflow."""
        queued = self._status == QUEUED
        key = torch.where(queued, self._order, torch.full_like(self._order, _ORDER_LIMIT * 4))
        rank = torch.empty_like(self._order)
        perm = torch.argsort(key.view(-1), stable=True)
        rank.view(-1)[perm] = torch.arange(perm.numel(), device=self.device)
        self._order = torch.where(queued, rank, torch.zeros_like(rank))
        self._next_order = int(queued.sum())  # ranks 0 .. Q-1 are in use

    # ------------------------------------------------------------------ validation
    def _check_inputs(
        self, server: Tensor, active: Tensor, cpu: Tensor, mem: Tensor, duration: Tensor
    ) -> None:
        shape = active.shape
        if active.ndim != 2 or shape[0] != self.num_envs:
            raise ValueError(f"active must have shape [E={self.num_envs}, N], got {tuple(shape)}")
        for name, t in (("server", server), ("cpu", cpu), ("mem", mem), ("duration", duration)):
            if t.shape != shape:
                raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
        if active.dtype != torch.bool:
            raise ValueError(f"active must be bool, got {active.dtype}")
        if server.dtype.is_floating_point or server.dtype == torch.bool:
            raise ValueError(f"server must be an integer tensor, got {server.dtype}")
        if duration.dtype.is_floating_point or duration.dtype == torch.bool:
            raise ValueError(f"duration must be an integer tensor, got {duration.dtype}")
        if not self.validate:
            return
        srv = server[active]
        if srv.numel() == 0:
            return
        if bool((srv < 0).any()) or bool((srv >= self.num_servers).any()):
            raise ValueError(
                f"server indices of active agents must be in [0, {self.num_servers}), got "
                f"min {int(srv.min())}, max {int(srv.max())}"
            )
        c, m = cpu[active].double(), mem[active].double()
        if not bool((c > 0).all()) or not bool((m > 0).all()):
            raise ValueError("active jobs must have positive cpu and mem demands")
        if bool((duration[active] < 1).any()):
            raise ValueError("active jobs must have duration >= 1")
        cap = self.capacity[srv]
        if bool((c > cap[:, 0] + _FIT_EPS).any()) or bool((m > cap[:, 1] + _FIT_EPS).any()):
            raise ValueError(
                "a job exceeds the total capacity of its server and could never start "
                "(it would block that queue forever)"
            )

    # ------------------------------------------------------------------ dynamics
    def dispatch(
        self, server: Tensor, active: Tensor, cpu: Tensor, mem: Tensor, duration: Tensor
    ) -> DispatchResult:
        """Enqueue the active agents' jobs and admit queued jobs FIFO on every server.

        Args:
            server: ``[E, N]`` int64 chosen server of each agent (ignored where inactive).
            active: ``[E, N]`` bool, agents that send a job this step.
            cpu: ``[E, N]`` vCPU demand (> 0 where active).
            mem: ``[E, N]`` GiB demand (> 0 where active).
            duration: ``[E, N]`` int64 steps (>= 1 where active).

        Returns:
            Per-environment admitted count, their summed waiting steps, and queue length.
        """
        self._check_inputs(server, active, cpu, mem, duration)
        self._enqueue(server, active, cpu, mem, duration)
        return self._admit()

    def _enqueue(
        self, server: Tensor, active: Tensor, cpu: Tensor, mem: Tensor, duration: Tensor
    ) -> None:
        e, n = active.shape
        need = active.sum(dim=1)  # [E]
        free = self._status == FREE
        if bool((free.sum(dim=1) < need).any()):  # the one host sync of the hot path
            self._grow(int(need.max()))
            free = self._status == FREE
        if self._next_order + n >= _ORDER_LIMIT:
            self._compact_orders()
        # Pair the k-th active agent of env e (agent order) with the k-th free slot of env e
        # (slot order): both nonzero() lists are sorted by env, then by index.
        free_rank = free.cumsum(dim=1) - 1
        take = free & (free_rank < need[:, None])
        slot_env, slot_idx = take.nonzero(as_tuple=True)
        job_env, job_agent = active.nonzero(as_tuple=True)
        self._server[slot_env, slot_idx] = server[job_env, job_agent].long()
        self._demand[slot_env, slot_idx, 0] = cpu[job_env, job_agent].double()
        self._demand[slot_env, slot_idx, 1] = mem[job_env, job_agent].double()
        self._remaining[slot_env, slot_idx] = duration[job_env, job_agent].long()
        self._status[slot_env, slot_idx] = QUEUED
        self._order[slot_env, slot_idx] = self._next_order + job_agent
        self._arrival[slot_env, slot_idx] = self._now
        self._next_order += n
        self.total_dispatched += need
        rows = slot_env * self.num_servers + self._server[slot_env, slot_idx]
        self._dirty.view(-1)[rows] |= self._loads.view(-1, 5)[rows, 4] == 0
        self._shift_loads(slot_env, slot_idx, running=0.0, queued=1.0)  # join the queues

    def _shift_loads(self, env: Tensor, slot: Tensor, running: float, queued: float) -> None:
        """Add ``running`` x (vCPU, GiB) to the running load of each job's server and ``queued``
        x (vCPU, GiB, 1 job) to its queued load: enqueue is (0, +1), admission (+1, -1) and
        completion (-1, 0)."""
        if env.numel() == 0:
            return
        dem = self._demand[env, slot]  # [J, 2]
        delta = torch.cat([dem * running, dem * queued, dem.new_full((dem.shape[0], 1), queued)], dim=1)
        rows = env * self.num_servers + self._server[env, slot]
        self._loads.view(-1, 5).index_add_(0, rows, delta)

    def _admit(self) -> DispatchResult:
        e, m = self.num_envs, self.num_servers
        # only dirty servers (see reset) can admit anything
        env_row = torch.arange(e, device=self.device).unsqueeze(1) * m
        dirty_slot = self._dirty.view(-1)[env_row + self._server]  # [E, J]
        q_env, q_slot = ((self._status == QUEUED) & dirty_slot).nonzero(as_tuple=True)
        admitted = torch.zeros(e, dtype=torch.long, device=self.device)
        admitted_wait = torch.zeros(e, dtype=torch.long, device=self.device)
        if q_env.numel() > 0:
            seg = q_env * m + self._server[q_env, q_slot]  # (env, server) segment id
            key = seg * _ORDER_LIMIT + self._order[q_env, q_slot]
            perm = torch.argsort(key)
            seg, q_env, q_slot = seg[perm], q_env[perm], q_slot[perm]
            dem = self._demand[q_env, q_slot]  # [Q, 2]
            # Segmented inclusive cumsum: global cumsum minus the total before the segment.
            csum = dem.cumsum(dim=0)
            first = torch.ones_like(seg, dtype=torch.bool)
            first[1:] = seg[1:] != seg[:-1]
            pos = torch.arange(seg.numel(), device=self.device)
            start = torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), dim=0).values
            seg_csum = csum - (csum[start] - dem[start])
            free_cap = self.capacity.unsqueeze(0) - self._loads[..., 0:2]  # [E, M, 2]
            fits = (seg_csum <= free_cap.reshape(-1, 2)[seg] + _FIT_EPS).all(dim=1)
            a_env, a_slot = q_env[fits], q_slot[fits]
            self._status[a_env, a_slot] = RUNNING
            self._shift_loads(a_env, a_slot, running=1.0, queued=-1.0)  # queue -> running
            admitted.index_add_(0, a_env, torch.ones_like(a_env))
            admitted_wait.index_add_(0, a_env, self._now - self._arrival[a_env, a_slot])
        self._dirty.zero_()
        waiting = (self._status == QUEUED).sum(dim=1)
        return DispatchResult(admitted=admitted, admitted_wait=admitted_wait, waiting=waiting)

    def tick(self) -> Tensor:
        """End the current step: advance running jobs by one step and complete finished ones.

        Returns:
            ``[E]`` int64 number of jobs completed at the end of this step.
        """
        running = self._status == RUNNING
        self._remaining = self._remaining - running.long()
        done = running & (self._remaining <= 0)
        d_env, d_slot = done.nonzero(as_tuple=True)
        self._shift_loads(d_env, d_slot, running=-1.0, queued=0.0)  # release the capacity
        self._dirty[d_env, self._server[d_env, d_slot]] = True
        self._status = torch.where(done, torch.zeros_like(self._status), self._status)
        completed = done.sum(dim=1)
        self.total_completed += completed
        self._now += 1
        return completed

    # ------------------------------------------------------------------ read-only views
    @property
    def running_load(self) -> Tensor:
        """``[E, M, 2]`` float32 (vCPU, GiB) used by running jobs on each server."""
        return self._loads[..., 0:2].float()

    @property
    def queued_load(self) -> Tensor:
        """``[E, M, 2]`` float32 (vCPU, GiB) demanded by jobs waiting in each server's queue."""
        return self._loads[..., 2:4].float()

    @property
    def queue_length(self) -> Tensor:
        """``[E, M]`` int64 number of jobs waiting in each server's queue."""
        return self._loads[..., 4].round().long()

    @property
    def num_waiting(self) -> Tensor:
        """``[E]`` int64 jobs waiting in queues."""
        return (self._status == QUEUED).sum(dim=1)

    @property
    def num_running(self) -> Tensor:
        """``[E]`` int64 jobs running."""
        return (self._status == RUNNING).sum(dim=1)

    @property
    def now(self) -> int:
        """Current step (number of ``tick`` calls since ``reset``)."""
        return self._now

    @property
    def cpu_capacity(self) -> Tensor:
        """``[M]`` float32 vCPU capacity."""
        return self.capacity[:, 0].float()

    @property
    def mem_capacity(self) -> Tensor:
        """``[M]`` float32 GiB capacity."""
        return self.capacity[:, 1].float()
