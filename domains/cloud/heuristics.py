"""Classical dispatch heuristics for the cloud domain (baselines and guidance sources).

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


# --------------------------------------------------------------------------- decentralised rules
# Each agent decides from the pre-step snapshot of its own candidates and its own job only,
# all agents at once (no agent sees what the others choose in this step).


def _require_generator(rule: Heuristic) -> torch.Generator:
    if rule.generator is None:
        raise RuntimeError(f"{type(rule).__name__}.reset(...) must be called before use")
    return rule.generator


def utilisation_after(view: ClusterView, jobs: Jobs) -> Tensor:
    """``[E, N, K]`` float64 utilisation of each agent's candidates after adding its own job.

    u_{i,k} = max_r (committed_{k,r} + d_{i,r}) / C_{k,r}, dimensionless (fraction of
    capacity; 1 = the scarcer resource exactly full), with d_i the (vCPU, GiB) demand of
    agent i's job and committed = running + queued on the pre-step snapshot. The job fits
    candidate k (committed + d <= C on both resources) exactly when u_{i,k} <= 1. For an
    inactive agent (zero demand) it is the committed utilisation. Computed in float64, like
    :class:`SimultaneousBestFit`, so that the fit test is exact for the workload's dyadic
    demands.
    """
    cap = view.capacity.to(torch.float64)[view.candidates]  # [N, K, 2]
    committed = view.committed.to(torch.float64)[:, view.candidates]  # [E, N, K, 2]
    demand = torch.stack([jobs.cpu, jobs.mem], dim=-1).to(torch.float64).unsqueeze(2)  # [E, N, 1, 2]
    return ((committed + demand) / cap).amax(dim=-1)


class HeadroomRandom(Heuristic):
    """Random fitting candidate, with probability proportional to the headroom it keeps.

    Headroom of candidate k for agent i's job: h_k = min_r (C_{k,r} - committed_{k,r} -
    d_{i,r}) / C_{k,r} = 1 - u_{i,k} (:func:`utilisation_after`), the fraction of capacity of
    the scarcer resource still free after placement. The job fits where h_k >= 0 (up to
    ``fit_tol``); the agent picks k with probability max(h_k, 0) / sum_j max(h_j, 0), so
    non-fitting candidates (h_k < 0) and exact fits (h_k = 0) get weight 0. If no candidate
    has positive weight (nothing fits, or only exact fits), it takes the candidate with the
    largest h_k, i.e. the smallest utilisation after placement: an exact fit if there is
    one, otherwise the least relative overload. Ties there: lowest index.

    Why: Least-Loaded and Simultaneous Best-Fit are deterministic functions of a snapshot
    that many dispatchers share, so dispatchers whose zones overlap herd onto the same
    server in the same step. Randomising in proportion to headroom spreads the step's
    arrivals over the servers that have room, in expectation in proportion to that room,
    without any coordination.

    One uniform draw per (environment, agent) per call, from the generator given to
    :meth:`reset`, whether or not the agent has a job (so the random stream does not depend
    on the arrivals); the draw picks k by inverting the cumulative weights.
    """

    fit_tol: float = BestFit.fit_tol
    """Tolerance of the fit test (fraction of capacity), against float rounding."""

    def _weight(self, headroom: Tensor) -> Tensor:
        """Choice weight of each fitting candidate: its relative headroom."""
        return headroom.clamp_min(0.0)

    def __call__(self, view: ClusterView, jobs: Jobs) -> Tensor:
        gen = _require_generator(self)
        headroom = 1.0 - utilisation_after(view, jobs)  # [E, N, K]
        fits = headroom >= -self.fit_tol
        weight = torch.where(fits, self._weight(headroom), torch.zeros_like(headroom))
        total = weight.sum(dim=-1, keepdim=True)  # [E, N, 1]
        u = torch.rand(total.shape, dtype=torch.float64, generator=gen, device=gen.device).to(total.device)
        # first k whose cumulative weight exceeds u * total: P(k) = weight_k / total, and a
        # zero-weight k is never the first (its cumulative weight equals its predecessor's)
        pick = (weight.cumsum(dim=-1) <= u * total).sum(dim=-1)
        k = weight.shape[-1]
        last_positive = torch.where(weight > 0, torch.arange(k, device=weight.device), -1).amax(dim=-1)
        pick = torch.minimum(pick, last_positive)  # u * total rounding up to total
        fallback = headroom.argmax(dim=-1)  # first maximum on ties
        return torch.where(total.squeeze(-1) > 0, pick, fallback)


class HeadroomRandomAbsolute(HeadroomRandom):
    """:class:`HeadroomRandom` with weights in absolute units: h_k times the server's vCPU.

    Relative headroom treats a 2-vCPU server with half its capacity free like a 64-vCPU one;
    in absolute units the larger server, which has more room for the jobs of this step, is
    chosen in proportion. Same fit test and fallback as the parent.
    """

    def __call__(self, view: ClusterView, jobs: Jobs) -> Tensor:
        self._scale = view.cpu_capacity[view.candidates]  # [N, K] vCPU of each candidate
        return super().__call__(view, jobs)

    def _weight(self, headroom: Tensor) -> Tensor:
        return headroom.clamp_min(0.0) * self._scale


class PowerOfD(Heuristic):
    """Power of d choices: sample d distinct candidates, join the less utilised one.

    Each agent draws d of its K candidates uniformly without replacement (all K if d >= K)
    and sends its job to the sampled candidate with the smallest utilisation after placement
    u_{i,k} = max_r (committed_{k,r} + d_{i,r}) / C_{k,r} (:func:`utilisation_after`,
    dimensionless); ties go to the first sampled, i.e. at random. It ignores whether the job
    fits.

    Why: the classical supermarket-model result (Mitzenmacher; Vvedenskaya et al.) is that
    two random choices instead of one cut the queue tail from geometric to doubly
    exponential, while the randomness keeps simultaneous dispatchers from all joining the
    single least-loaded server of a shared snapshot. d trades the two: d = 1 is
    :class:`RandomDispatch`, d = K is least utilisation after placement (herding).

    Args:
        d: number of sampled candidates (>= 1); registered as ``power_of_two`` with d = 2.
    """

    def __init__(self, d: int = 2) -> None:
        super().__init__()
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"d must be an integer >= 1, got {d!r}")
        self.d = d

    def sample(self, view: ClusterView, jobs: Jobs) -> Tensor:
        """``[E, N, min(d, K)]`` int64 distinct candidate indices, a uniform random subset in
        random order (the first min(d, K) of a uniform random permutation of [0, K)).

        Draws E * N * K uniforms from the generator given to :meth:`reset` per call.
        """
        gen = _require_generator(self)
        e, n = jobs.active.shape
        k = view.candidates.shape[1]
        keys = torch.rand(e, n, k, dtype=torch.float64, generator=gen, device=gen.device)
        return keys.argsort(dim=-1)[..., : min(self.d, k)].to(jobs.active.device)

    def __call__(self, view: ClusterView, jobs: Jobs) -> Tensor:
        picks = self.sample(view, jobs)  # [E, N, d]
        util = utilisation_after(view, jobs).gather(-1, picks)
        best = util.argmin(dim=-1, keepdim=True)  # first sampled on ties
        return picks.gather(-1, best).squeeze(-1)


class LeastLoadedFit(Heuristic):
    """Join the candidate with the smallest utilisation after placing the job (ties: lowest index).

    Rule: among the candidates where the job fits (committed + d <= C on both resources),
    the one with the smallest u_{i,k} = max_r (committed_{k,r} + d_{i,r}) / C_{k,r}
    (:func:`utilisation_after`, dimensionless); if none fits, the smallest u_{i,k} overall.
    Since the job fits exactly where u_{i,k} <= 1, any fitting candidate has a smaller
    u_{i,k} than every non-fitting one, so both cases are one argmin over all K.

    Why: :class:`LeastLoaded` ranks servers by utilisation *before* the job, so on a
    heterogeneous fleet it may send a large job to a small, emptier server where it does not
    fit (and queues) while a larger server has room. Counting the job in the utilisation
    fixes that at no cost; it is still deterministic and simultaneous, so it herds like
    Least-Loaded.
    """

    def __call__(self, view: ClusterView, jobs: Jobs) -> Tensor:
        return utilisation_after(view, jobs).argmin(dim=-1)  # first minimum on ties


HEURISTICS: dict[str, type[Heuristic]] = {
    "random": RandomDispatch,
    "round_robin": RoundRobin,
    "least_loaded": LeastLoaded,
    "best_fit": BestFit,
    "best_fit_simultaneous": SimultaneousBestFit,
    "headroom_random": HeadroomRandom,
    "headroom_random_absolute": HeadroomRandomAbsolute,
    "power_of_two": PowerOfD,
    "least_loaded_fit": LeastLoadedFit,
}
"""Heuristics by name, for configuration files and command lines."""
