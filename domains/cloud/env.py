"""The cloud-scheduling environment: N dispatchers, M heterogeneous servers, E parallel copies.

One step: every agent with a job (``active``) picks one of its K candidate servers; the
jobs join the chosen servers' FIFO queues and start as soon as they fit; then time moves on
by one step and finished jobs free their capacity. See docs/domains/cloud.md for every
formula; the key ones:

* reward r_t = -W_t / lambda - beta * Q_t: W_t jobs waiting in queues after the dispatch,
  lambda the scenario's mean arrivals per step (so W_t / lambda is in "steps of arrivals"
  and the episode sum is about T times the mean waiting time per job in steps, independent
  of N),
  Q_t the fraction of servers with a non-empty queue, beta = ``overload_weight``.
* observation of agent i (9K + 5 numbers): for each candidate server, running CPU and
  memory utilisation, queued CPU and memory over capacity, CPU size / 16, memory size / 128,
  whether the job fits the free capacity now, CPU and memory headroom left after placing
  the job; then the job's CPU / 4, memory / 8, log duration scaled to [0, 1], a has-job flag
  and the episode progress t / T.
* global state (4M + 3): committed and running CPU and memory utilisation of every server,
  offered CPU and memory load over fleet capacity, and t / T.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from guidedmarl.env import EnvSpec, MultiAgentVecEnv, Step

from .fleet import Fleet
from .heuristics import ClusterView, Jobs, LeastLoaded
from .model import CloudContext
from .settings import CloudSettings
from .simulator import ClusterSimulator
from .scenarios import Scenario, generate_scenarios

CANDIDATE_FEATURES = 9
JOB_FEATURES = 5


class CloudEnv(MultiAgentVecEnv):
    """E synchronous cloud clusters sharing one fleet and one set of candidate zones.

    Args:
        num_envs: E.
        fleet: the servers (fixed for the domain: the same datacentre for train and test).
        candidates: ``[N, K]`` long, each agent's zone.
        settings: the domain settings (horizon, warm-up, workload, reward weights).
    """

    def __init__(self, num_envs: int, fleet: Fleet, candidates: Tensor, settings: CloudSettings) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.fleet = fleet
        self.candidates = candidates
        self.settings = settings
        n, k = candidates.shape
        m = fleet.num_servers
        self.device = fleet.cpu.device  # the environment lives where its fleet does
        if candidates.device != self.device:
            raise ValueError(f"candidates are on {candidates.device} but the fleet is on {self.device}")
        self.capacity = torch.stack([fleet.cpu, fleet.mem], dim=-1)  # [M, 2]
        self.spec = EnvSpec(
            num_agents=n,
            obs_dim=CANDIDATE_FEATURES * k + JOB_FEATURES,
            state_dim=4 * m + 3,
            horizon=settings.horizon,
            action_kind="discrete",
            num_actions=k,
            mean_field_features=2 * k,
            option_features=CANDIDATE_FEATURES,
        )
        # the simulator's per-dispatch value checks are done once per scenario instead
        # (:meth:`_check_scenario`); chosen servers are candidates, and actions are checked
        self.sim = ClusterSimulator(fleet.cpu, fleet.mem, num_envs, validate=False)
        self.scenario: Scenario | None = None
        self.t = 0
        # the evaluation environments reset to the same seeds at every evaluation: the state
        # after generation and warm-up is deterministic, so it is kept once a reset repeats
        self._last_seeds: tuple[int, ...] | None = None
        self._warm: tuple[tuple[int, ...], Scenario, Tensor, dict[str, object]] | None = None
        self._log_max_duration = math.log1p(settings.workload.max_duration)
        self._candidate_capacity = self.capacity[candidates]  # [N, K, 2]

    # ----------------------------------------------------------------- jobs of the current step
    def _index(self) -> int:
        return self.settings.warmup + self.t

    def current_jobs(self) -> Jobs:
        """The jobs that arrive at the current step (one per active agent)."""
        sc = self._require_scenario()
        s = self._index()
        return Jobs(active=sc.active[:, s], cpu=sc.cpu[:, s], mem=sc.mem[:, s])

    def _require_scenario(self) -> Scenario:
        if self.scenario is None:
            raise RuntimeError("call reset(seeds) before stepping the cloud environment")
        return self.scenario

    # ----------------------------------------------------------------- MultiAgentVecEnv
    def reset(self, seeds: list[int]) -> Step:
        """Generate one scenario per seed and warm the cluster up; a repeated reset to the same
        seeds (evaluation) restores the kept post-warm-up state instead, with identical results."""
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset needs {self.num_envs} seeds, got {len(seeds)}")
        key = tuple(int(x) for x in seeds)
        if self._warm is not None and self._warm[0] == key:
            _, self.scenario, self._mean_rate, state = self._warm
            self.sim.restore(state)
        else:
            self._generate_and_warm_up(seeds)
            if key == self._last_seeds:  # the second reset to these seeds: keep the state for the next ones
                self._warm = (key, self.scenario, self._mean_rate, self.sim.snapshot())  # type: ignore[assignment]
        self._last_seeds = key
        self.t = 0
        zeros = torch.zeros(self.num_envs, device=self.device)
        return self._observe(zeros, torch.zeros(self.num_envs, dtype=torch.bool, device=self.device), {})

    def _generate_and_warm_up(self, seeds: list[int]) -> None:
        s = self.settings
        self.scenario = generate_scenarios(
            seeds, self.spec.num_agents, s.horizon, s.warmup, self.fleet.total_cpu, s.workload, self.device
        )
        self._check_scenario(self.scenario)
        self.sim.reset()
        self._mean_rate = self.scenario.arrival_rate[:, s.warmup :].mean(dim=1).clamp_min(1e-6)  # [E]
        # warm-up: fill the cluster with the least-loaded rule so episodes start in steady state
        warm = LeastLoaded()
        warm.reset(self.num_envs, self.spec.num_agents, torch.Generator().manual_seed(0))
        for w in range(s.warmup):
            sc = self.scenario
            jobs = Jobs(active=sc.active[:, w], cpu=sc.cpu[:, w], mem=sc.mem[:, w])
            choice = warm(ClusterView.of(self.sim, self.candidates), jobs)
            self._dispatch(choice, w)
            self.sim.tick()

    def _check_scenario(self, sc: Scenario) -> None:
        """Every job of the scenario, warm-up included, is valid for any candidate it may be sent
        to: positive vCPU and GiB, a duration of at least one step, and small enough for the
        smallest of the agent's candidates (a job larger than its server would block that queue
        forever). One pass over the scenario per reset, in place of checks at every dispatch."""
        active = sc.active
        if not bool(active.any()):
            return
        cpu, mem, duration = sc.cpu[active], sc.mem[active], sc.duration[active]
        if not (bool((cpu > 0).all()) and bool((mem > 0).all())):
            raise ValueError("the scenario has active jobs with non-positive vCPU or GiB demand")
        if not bool((duration >= 1).all()):
            raise ValueError("the scenario has active jobs with a duration below one step")
        smallest = self._candidate_capacity.amin(dim=1)  # [N, 2]: each agent's smallest candidate
        agent = active.nonzero()[:, 2]
        too_big = (cpu.double() > smallest[agent, 0].double() + 1e-9) | (mem.double() > smallest[agent, 1].double() + 1e-9)
        if bool(too_big.any()):
            worst = int(too_big.nonzero()[0, 0])
            raise ValueError(
                f"agent {int(agent[worst])} gets a job of {float(cpu[worst]):g} vCPU, {float(mem[worst]):g} GiB that exceeds "
                f"the capacity of one of its candidate servers ({float(smallest[agent[worst], 0]):g} vCPU, "
                f"{float(smallest[agent[worst], 1]):g} GiB): it could never start there"
            )

    def model_context(self) -> CloudContext:
        jobs = self.current_jobs()
        sc = self._require_scenario()
        return CloudContext(
            committed=self.sim.running_load + self.sim.queued_load,
            capacity=self.capacity,
            candidates=self.candidates,
            demand=torch.stack([jobs.cpu, jobs.mem], dim=-1),
            offered=sc.offered_load[:, self._index()],
            episode_offered=sc.offered_load,
            step=self._index(),
        )

    def mean_field(self, actions: Tensor, active: Tensor) -> Tensor:
        """What the other dispatchers send to each of agent i's candidates this step: ``[E, N, 2K]``.

        For candidate server k of agent i and resource r, the demand the *other* active
        agents dispatch to that server now, over its capacity (the utilisation they add):
        the mean-field critic's view of its neighbours (the agents that share its servers).
        """
        jobs = self.current_jobs()
        e, (n, k) = self.num_envs, self.candidates.shape
        demand = torch.stack([jobs.cpu, jobs.mem], dim=-1) * active.unsqueeze(-1)  # [E, N, 2]
        server = self.candidates.unsqueeze(0).expand(e, -1, -1).gather(2, actions.long().unsqueeze(-1)).squeeze(-1)
        added = torch.zeros(e, self.fleet.num_servers, 2, device=self.device).index_put_(
            (torch.arange(e, device=self.device).unsqueeze(1).expand(e, n), server), demand, accumulate=True
        )
        at_candidates = added[:, self.candidates]  # [E, N, K, 2]
        own = torch.nn.functional.one_hot(actions.long(), k).unsqueeze(-1) * demand.unsqueeze(2)  # [E, N, K, 2]
        return ((at_candidates - own) / self.capacity[self.candidates]).reshape(e, n, 2 * k)

    def step(self, actions: Tensor) -> Step:
        self._require_scenario()
        if self.t >= self.spec.horizon:
            raise RuntimeError("episode is over: call reset(seeds) first")
        actions = self.check_actions(actions)
        result = self._dispatch(actions, self._index())
        queued_servers = (self.sim.queue_length > 0).float().mean(dim=1)
        waiting = result.waiting.float()
        reward = -waiting / self._mean_rate - self.settings.overload_weight * queued_servers
        util = self.sim.running_load / self.capacity
        info = {
            "waiting_jobs_per_arrival": waiting / self._mean_rate,
            "queued_server_fraction": queued_servers,
            "mean_wait_steps": result.admitted_wait.float() / result.admitted.float().clamp_min(1.0),
            "cpu_utilisation": util[..., 0].mean(dim=1),
            "mem_utilisation": util[..., 1].mean(dim=1),
        }
        self.sim.tick()
        self.t += 1
        done = torch.full((self.num_envs,), self.t >= self.spec.horizon, device=self.device)
        return self._observe(reward.float(), done, info)

    # ----------------------------------------------------------------- internals
    def _dispatch(self, choice: Tensor, s: int):
        sc = self._require_scenario()
        server = self.candidates.unsqueeze(0).expand(self.num_envs, -1, -1).gather(2, choice.long().unsqueeze(-1))
        return self.sim.dispatch(server.squeeze(-1), sc.active[:, s], sc.cpu[:, s], sc.mem[:, s], sc.duration[:, s])

    def _observe(self, reward: Tensor, done: Tensor, info: dict[str, Tensor]) -> Step:
        """Observations (module docstring), written into one ``[E, N, 9K + 5]`` tensor.

        The per-server numbers, including the free share 1 - running - queued, are gathered to the
        candidates in one pass; the headroom (free share minus the job's demand over the
        candidate's capacity) and the fit flag are then written in place: the same float32
        operations in the same order as the formulas, with no concatenated temporaries.
        """
        sc = self._require_scenario()
        e, (n, k) = self.num_envs, self.candidates.shape
        s = min(self._index(), sc.num_steps - 1)
        cap = self.capacity
        running = self.sim.running_load / cap  # [E, M, 2]
        queued = self.sim.queued_load / cap
        active = sc.active[:, s]
        demand = torch.stack([sc.cpu[:, s], sc.mem[:, s]], dim=-1)  # [E, N, 2]

        free = (1.0 - running) - queued  # [E, M, 2]
        per_server = torch.cat([running, queued, (cap / cap.new_tensor([16.0, 128.0])).expand(e, -1, -1), free], dim=-1)
        cand = per_server[:, self.candidates]  # [E, N, K, 8]
        obs = torch.empty(e, n, k * CANDIDATE_FEATURES + JOB_FEATURES, device=self.device)
        per_cand = obs[..., : k * CANDIDATE_FEATURES].view(e, n, k, CANDIDATE_FEATURES)
        per_cand[..., 0:6] = cand[..., 0:6]
        headroom = per_cand[..., 7:9]
        torch.sub(cand[..., 6:8], demand.unsqueeze(2) / self._candidate_capacity, out=headroom)  # [E, N, K, 2]
        per_cand[..., 6] = (headroom >= 0).all(dim=-1)
        job = obs[..., k * CANDIDATE_FEATURES :]
        torch.div(demand, demand.new_tensor([4.0, 8.0]), out=job[..., 0:2])
        torch.div(torch.log1p(sc.duration[:, s].float()), self._log_max_duration, out=job[..., 2])
        job[..., 3] = active
        job[..., 4] = self.t / self.spec.horizon

        committed = running + queued
        offered = sc.offered_load[:, s] / cap.sum(dim=0)
        state = torch.cat(
            [committed.reshape(e, -1), running.reshape(e, -1), offered, torch.full((e, 1), self.t / self.spec.horizon, device=self.device)],
            dim=-1,
        )
        return Step(obs=obs, state=state, active=active, reward=reward, done=done, info=info)
