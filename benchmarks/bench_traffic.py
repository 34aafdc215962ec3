"""Benchmark of DG-PG training on the traffic domain (issue 11; measurement only, not a test).

    python benchmarks/bench_traffic.py                          # Sioux Falls, N = 10,000, 3 episodes, 1 thread
    python benchmarks/bench_traffic.py --agents 1000 --network anaheim --episodes 2

Builds the DG-PG trainer as ``guidedmarl run`` does (defaults: one training environment, horizon 10)
and measures: the build (network, k shortest routes); the reference solves (UE and SO of every new
scenario, :class:`ScenarioBank.solve_seconds`); time per training episode (rollout + guidance + PPO
update; the first episode, which solves its scenario's reference, is reported apart); one greedy
evaluation on the 40 test scenarios (their references solved beforehand); the peak resident set size
of the process (``ru_maxrss``). Prints one Markdown table row.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (docs/performance.md)

import torch  # noqa: E402

from guidedmarl.config import build_config  # noqa: E402
from guidedmarl.evaluation import run_policy  # noqa: E402
from guidedmarl.experiment import build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--network", default="siouxfalls")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--test-scenarios", type=int, default=40)
    args = parser.parse_args()
    start = time.perf_counter()
    config = build_config({"domain": "traffic", "agents": args.agents, "threads": args.threads, "episodes": args.episodes,
                           "domain_config": {"network": args.network}})
    domain, trainer = build(config)
    built = time.perf_counter() - start
    bank = domain.bank  # type: ignore[attr-defined]
    episodes = []
    for episode in range(args.episodes):
        t0 = time.perf_counter()
        trainer.train_episode(domain.train_seeds(episode, config.envs, config.seed))
        episodes.append(time.perf_counter() - t0)
    train_solve = bank.solve_seconds
    seeds = domain.test_seeds(args.test_scenarios)
    t0 = time.perf_counter()
    bank.get(seeds)
    test_solve = time.perf_counter() - t0
    env = domain.make_env(args.test_scenarios)
    t0 = time.perf_counter()
    result = run_policy(env, seeds, lambda step: trainer.act(step, True))
    evaluation = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    later = episodes[1:] or episodes
    print(f"# traffic benchmark: {args.network}, N = {args.agents}, {args.threads} thread(s), torch "
          f"{torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("| network | N | build, s | training episode, s (first, with its reference) | reference solves "
          f"(train / {args.test_scenarios} test), s | evaluation, {args.test_scenarios} scenarios, s | peak RSS, MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.network} | {args.agents:,} | {built:.1f} | {statistics.mean(later):.2f} ({episodes[0]:.2f}) | "
          f"{train_solve:.1f} / {test_solve:.1f} | {evaluation:.1f} | {peak:,.0f} |")
    print(f"(greedy test reward of the briefly trained policy: {result.mean:.3f})")


if __name__ == "__main__":
    main()
