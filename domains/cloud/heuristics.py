"""Classical dispatch heuristics for the cloud domain (baselines and guidance sources).

The decentralised, randomised rules are in :mod:`.decentralised`; :mod:`.rules` names them all.

Every heuristic maps the current cluster state and the jobs of this step to one action per
agent: an *index into the agent's candidate list* (``[E, N]`` int64 in ``[0, K)``), the same
action space as the learned policies. The chosen server is ``candidates[n, action]``.
Actions of inactive agents are valid indices but carry no meaning.

Utilisation of a server is ``max`` over the two resources of ``load / capacity`` (a server
is as full as its scarcest resource). *Committed* load is running plus queued load, i.e.
what the server must eventually serve; *free* capacity is capacity minus committed load.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from .simulator import ClusterSimulator


@dataclass
class ClusterView:
    """What a dispatcher may look at (vCPU and GiB).

    Attributes:
        cpu_capacity: ``[M]`` vCPU capacity per server.
        mem_capacity: ``[M]`` GiB capacity per server.
        running: ``[E, M, 2]`` (vCPU, GiB) used by running jobs.
        queued: ``[E, M, 2]`` (vCPU, GiB) demanded by queued jobs.
        candidates: ``[N, K]`` int64 candidate servers of each agent.
    """

    cpu_capacity: Tensor
    mem_capacity: Tensor
    running: Tensor
    queued: Tensor
    candidates: Tensor

    @classmethod
    def of(cls, sim: ClusterSimulator, candidates: Tensor) -> ClusterView:
        """Snapshot of ``sim``'s current loads with the agents' ``candidates``."""
        return cls(
            cpu_capacity=sim.cpu_capacity,
            mem_capacity=sim.mem_capacity,
            running=sim.running_load,
            queued=sim.queued_load,
            candidates=candidates,
        )

    @property
    def capacity(self) -> Tensor:
        """``[M, 2]`` (vCPU, GiB) capacity."""
        return torch.stack([self.cpu_capacity, self.mem_capacity], dim=-1)

    @property
    def committed(self) -> Tensor:
        """``[E, M, 2]`` running plus queued load."""
        return self.running + self.queued


@dataclass
class Jobs:
    """The jobs of one step.

    Attributes:
        active: ``[E, N]`` bool, agent has a job.
        cpu: ``[E, N]`` vCPU demand.
        mem: ``[E, N]`` GiB demand.
    """

    active: Tensor
    cpu: Tensor
    mem: Tensor


class Heuristic(ABC):
    """A stateless-or-stateful dispatch rule, batched over environments and agents."""

    def __init__(self) -> None:
        self.generator: torch.Generator | None = None
        self.num_envs = 0
        self.num_agents = 0

    def reset(self, num_envs: int, num_agents: int, generator: torch.Generator) -> None:
        """Start a new episode for E environments of N agents; ``generator`` feeds randomness."""
        self.num_envs = num_envs
        self.num_agents = num_agents
        self.generator = generator

    @abstractmethod
    def __call__(self, view: ClusterView, jobs: Jobs) -> Tensor:
        """Return ``[E, N]`` int64 candidate indices in ``[0, K)``."""


class RandomDispatch(Heuristic):
    """Uniformly random candidate, drawn from the generator given to :meth:`reset`."""

    def __call__(self, view: ClusterView, jobs: Jobs) -> Tensor:
        if self.generator is None:
            raise RuntimeError("RandomDispatch.reset(...) must be called before use")
        k = view.candidates.shape[1]
        out = torch.randint(
            0, k, tuple(jobs.active.shape), generator=self.generator, device=self.generator.device
        )
        return out.to(jobs.active.device)


class RoundRobin(Heuristic):
    """Each agent cycles through its own candidate list, advancing only when it has a job.

    The pointer of every agent starts at index 0 at :meth:`reset`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pointer: Tensor | None = None

    def reset(self, num_envs: int, num_agents: int, generator: torch.Generator) -> None:
        super().reset(num_envs, num_agents, generator)
        self.pointer = None  # allocated on first call, on the jobs' device

    def __call__(self, view: ClusterView, jobs: Jobs) -> Tensor:
        k = view.candidates.shape[1]
        if self.pointer is None:
            self.pointer = torch.zeros_like(jobs.active, dtype=torch.long)
        elif self.pointer.shape != jobs.active.shape:
            raise ValueError(
                f"RoundRobin was reset for shape {tuple(self.pointer.shape)}, got jobs of shape "
                f"{tuple(jobs.active.shape)}"
            )
        action = self.pointer % k
        self.pointer = (self.pointer + jobs.active.long()) % k
        return action


class LeastLoaded(Heuristic):
    """Join the candidate with the smallest committed utilisation (ties: lowest index).

    All agents decide simultaneously on the same snapshot (no update within a step), which is
    what independent dispatchers observing the cluster would do.
    """

    def __call__(self, view: ClusterView, jobs: Jobs) -> Tensor:
        util = (view.committed / view.capacity).amax(dim=-1)  # [E, M]
        cand_util = util[:, view.candidates]  # [E, N, K]
        return cand_util.argmin(dim=-1)  # argmin returns the first minimum


def fit_score(committed: Tensor, job: Tensor, inv_cap: Tensor, fit_limit: float) -> Tensor:
    """Best-fit score of placing ``job`` on each candidate (lower is better), ``[..., K]``.

    ``committed`` and ``inv_cap`` are ``[..., K, 2]``, ``job`` broadcasts to them. A fitting
    candidate (utilisation after placement at most ``fit_limit``) scores
    -3 - sum_r after_r / cap_r, in [-5, -3]: the fullest fit, i.e. the smallest normalised
    leftover 2 - sum_r after_r / cap_r, wins. A non-fitting one scores its utilisation after
    placement max_r after_r / cap_r >= 0, so any fit beats every non-fit, and without a fit
    the least-utilised-after-placement candidate wins.
    """
    ratio = (committed + job) * inv_cap
    util_after = ratio.amax(dim=-1)
    return torch.where(util_after <= fit_limit, -3.0 - ratio.sum(dim=-1), util_after)


class BestFit(Heuristic):
    """Global greedy best fit: a strong centralised baseline.

    Jobs of the step are placed one at a time in agent order (vectorised over
    environments), each seeing the placements made before it in this step. A job goes to
    the candidate where it fits in the free capacity (capacity - running - queued) leaving
    the smallest normalised leftover ``sum_r (free_r - demand_r) / capacity_r``; if it fits
    nowhere, to the candidate with the smallest committed utilisation after placement.
    Ties go to the lowest candidate index.

    Only the rounds needed are run: round i places the i-th active job of every environment,
    so the loop length is the largest number of jobs in one environment, not N.
    """

    fit_tol: float = 1e-9
    """Relative tolerance of the fit test (fraction of capacity), against float rounding."""

    def __call__(self, view: ClusterView, jobs: Jobs) -> Tensor:
        active = jobs.active
        e, n = active.shape
        m = view.cpu_capacity.shape[0]
        device = active.device
        cap = view.capacity.to(torch.float64)  # [M, 2]
        committed = view.committed.to(torch.float64).clone()  # [E, M, 2]
        cands = view.candidates
        actions = torch.zeros(e, n, dtype=torch.long, device=device)
        count = active.sum(dim=1)
        rounds = int(count.max()) if e > 0 else 0
        if rounds == 0:
            return actions

        # Round-major layout: agent_of[e, i] is the i-th active agent of environment e.
        rank = active.long().cumsum(dim=1) - 1
        env_i, ag_i = active.nonzero(as_tuple=True)
        agent_of = torch.zeros(e, rounds, dtype=torch.long, device=device)
        agent_of[env_i, rank[env_i, ag_i]] = ag_i
        valid = torch.arange(rounds, device=device).unsqueeze(0) < count.unsqueeze(1)  # [E, R]
        demand = torch.stack([jobs.cpu, jobs.mem], dim=-1).to(torch.float64)  # [E, N, 2]
        env_ar = torch.arange(e, device=device)
        # Zero demand for padding rounds, so they change nothing.
        job_all = demand[env_ar.unsqueeze(1), agent_of] * valid.unsqueeze(-1)  # [E, R, 2]
        cand_all = cands[agent_of]  # [E, R, K]
        inv_cap_all = (1.0 / cap)[cand_all]  # [E, R, K, 2]
        flat_all = env_ar.view(e, 1, 1) * m + cand_all  # [E, R, K] rows of committed_flat
        committed_flat = committed.view(e * m, 2)
        fit_limit = 1.0 + self.fit_tol
        choices: list[Tensor] = []

        for i in range(rounds):  # sequential by nature: each job sees the previous ones
            rows = flat_all[:, i]  # [E, K]
            job = job_all[:, i]  # [E, 2]
            score = fit_score(committed_flat[rows], job.unsqueeze(1), inv_cap_all[:, i], fit_limit)
            choice = score.argmin(dim=1, keepdim=True)  # [E, 1]; first minimum on ties
            committed_flat.index_add_(0, rows.gather(1, choice).squeeze(1), job)
            choices.append(choice)
        choice_all = torch.cat(choices, dim=1)  # [E, R]

        actions[env_i, ag_i] = choice_all[env_i, rank[env_i, ag_i]]
        return actions


class SimultaneousBestFit(Heuristic):
    """Best fit decided by every dispatcher at once, from the state at the start of the step.

    The same rule as :class:`BestFit`, but without seeing the other jobs of the step: the
    information a decentralised dispatcher (and a learned policy) has. The gap between the two
    measures what Best-Fit gains from deciding sequentially with fresh information.
    """

    fit_tol: float = BestFit.fit_tol

    def __call__(self, view: ClusterView, jobs: Jobs) -> Tensor:
        cap = view.capacity.to(torch.float64)  # [M, 2]
        committed = view.committed.to(torch.float64)[:, view.candidates]  # [E, N, K, 2]
        demand = torch.stack([jobs.cpu, jobs.mem], dim=-1).to(torch.float64).unsqueeze(2)  # [E, N, 1, 2]
        score = fit_score(committed, demand, (1.0 / cap)[view.candidates], 1.0 + self.fit_tol)
        return score.argmin(dim=-1)
