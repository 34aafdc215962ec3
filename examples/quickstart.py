"""Quickstart: train DG-PG on the cloud domain from Python and read the results.

Run:  python examples/quickstart.py
"""

from __future__ import annotations

from guidedmarl import RunConfig
from guidedmarl.experiment import run_experiment as run

config = RunConfig(
    domain="cloud",
    algo="dgpg",
    agents=20,
    episodes=5,
    seed=0,
    out="runs/quickstart",
    guidance={"alpha": {"kind": "linear", "start": 0.9, "end": 0.2}},
    domain_config={"reference_layer": "waterfill", "horizon": 100},
)
result = run(config)
print(f"best test reward {result.best_test_reward:.2f} at episode {result.best_episode}")
for name, evaluation in result.baselines.items():
    print(f"  {name:>12}: {evaluation.mean:.2f}")
print(f"curves and metrics in {result.out}")
