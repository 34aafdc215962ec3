"""Decentralised, randomised and fit-aware dispatch rules for the cloud domain.

Each agent decides from the pre-step snapshot of its own candidates and its own job only,
all agents at once (no agent sees what the others choose in this step): the comparison a
decentralised learner should beat. Same action space and conventions as
:mod:`.heuristics` (a candidate index per agent, ``[E, N]`` int64).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .heuristics import BestFit, ClusterView, Heuristic, Jobs



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
