"""Successive evaluations on the cloud test scenarios: what keeping the post-warm-up state saves (issue 14).

Run on demand (not a test; pytest does not collect this file):

    python benchmarks/eval_reset_cache.py --agents 1500 --evaluations 4

Builds the DG-PG trainer of ``guidedmarl run --domain cloud --agents N`` and evaluates its
(untrained) policy ``--evaluations`` times on the 40 test scenarios, as a run does after every
evaluated episode. The first two resets generate the scenarios and warm the cluster up (the
second keeps the state); later ones restore it. Prints the seconds of each evaluation (reset
included) and checks that every evaluation returns the same rewards.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from guidedmarl.config import RunConfig
from guidedmarl.evaluation import run_policy
from guidedmarl.experiment import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1500)
    parser.add_argument("--evaluations", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = RunConfig(domain="cloud", agents=args.agents, threads=args.threads)
    domain, trainer = build(config)
    seeds = domain.test_seeds(config.eval.test_scenarios)
    env = domain.make_env(len(seeds))
    print(f"cloud, N = {args.agents}, {len(seeds)} test scenarios, {args.threads} thread(s), "
          f"{platform.node()}, torch {torch.__version__}")  # fmt: skip
    print("| evaluation | seconds (reset and 100 steps) | mean test reward |")
    print("|---:|---:|---:|")
    rewards = []
    for k in range(args.evaluations):
        t0 = time.perf_counter()
        result = run_policy(env, seeds, lambda s: trainer.act(s, False), sample_seed=config.seed)
        rewards.append(result.returns)
        print(f"| {k + 1} | {time.perf_counter() - t0:.2f} | {result.mean:.3f} |")
    print("identical rewards at every evaluation:", all(r == rewards[0] for r in rewards))


if __name__ == "__main__":
    main()
