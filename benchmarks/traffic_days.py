"""Day by day: how a trained traffic policy does on each day of a test episode.

Loads a run folder of ``guidedmarl run --domain traffic`` (its ``config.yaml`` and ``final.pt``),
plays the first ``--scenarios`` test scenarios greedily and by sampling, and prints per day the mean
TSTT over the route-set UE minus 1, the largest volume over capacity, and the share of packets on their
route 0 (the free-flow shortest). Shows where an episode's cost comes from (docs/domains/traffic.md 7.2).

    python benchmarks/traffic_days.py runs/latest [--scenarios 8] [--checkpoint final.pt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from guidedmarl.config import RunConfig
from guidedmarl.experiment import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--scenarios", type=int, default=8)
    parser.add_argument("--checkpoint", default="final.pt")
    args = parser.parse_args()
    config = RunConfig.model_validate(yaml.safe_load((args.run / "config.yaml").read_text()))
    domain, trainer = build(config)
    trainer.load_state_dict(torch.load(args.run / args.checkpoint, weights_only=False))
    env = domain.make_env(args.scenarios)
    seeds = domain.test_seeds(args.scenarios)
    print("| evaluation | day | TSTT / UE - 1 | max v / C | share on route 0 |")
    print("|---|---:|---:|---:|---:|")
    for greedy in (True, False):
        step = env.reset(seeds)
        for day in range(env.spec.horizon):
            actions = trainer.act(step, greedy)
            step = env.step(actions)
            mode = "greedy" if greedy else "sampled"
            print(f"| {mode} | {day} | {step.info['tstt_over_ue'].mean():+.3f} | "
                  f"{step.info['max_volume_capacity'].mean():.2f} | {(actions == 0).float().mean():.2f} |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
