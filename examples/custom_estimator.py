"""Add your own advantage estimator: clipped descent guidance, in one file.

DG-PG mixes the standardised PPO advantage with the standardised guidance weight,
A = (1 - alpha) A_hat - alpha g_hat. On a domain where a few agents get very large g (an
agent that overloads a small server), g_hat is heavy-tailed and those agents dominate the
update. This estimator clips g_hat to [-c, c] before mixing:

    A = (1 - alpha) A_hat - alpha clip(g_hat, -c, c)

It is one config model (its settings, validated like every other setting) and one estimator
class; registering it and a preset makes it available as ``--algo dgpg_clipped``. Nothing
in ``guidedmarl/`` changes.

Run it from the command line (``--plugin`` imports this file, which registers the estimator):

    guidedmarl run --plugin examples/custom_estimator.py --domain cloud --algo dgpg_clipped \
        --set learner.estimator.clip=1.5

or from Python:  ``python examples/custom_estimator.py --agents 50 --episodes 10``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field
from torch import Tensor

from guidedmarl import RunConfig
from guidedmarl.experiment import run_experiment
from guidedmarl.guidance import GuidedConfig, GuidedEstimator, masked_standardize, register_estimator
from guidedmarl.learners import PRESETS, Preset, register_preset


class ClippedGuidanceConfig(GuidedConfig):
    """DG-PG's settings plus the clip level of the standardised guidance weight."""

    kind: Literal["dgpg_clipped"] = "dgpg_clipped"  # type: ignore[assignment]
    clip: float = Field(2.0, gt=0, le=100, description="c: g_hat is clipped to [-c, c] (in standard deviations)")


class ClippedGuidanceEstimator(GuidedEstimator):
    """A = (1 - alpha) A_hat - alpha clip(g_hat, -c, c); the guidance weights come from the
    parent class (``on_step`` calls the library's one computation of g)."""

    kind = "dgpg_clipped"
    config_model = ClippedGuidanceConfig

    def advantage(self, advantage: Tensor, records: Mapping[str, Tensor], mask: Tensor, progress: float) -> Tensor:
        a_hat = masked_standardize(advantage, mask)
        alpha = self.alpha(progress)
        if alpha == 0.0:
            return a_hat
        clip = self.config.clip  # type: ignore[attr-defined]
        g_hat = self.scale_guidance(records["guidance"], mask).clamp(-clip, clip)
        return (1.0 - alpha) * a_hat - alpha * g_hat


register_estimator(ClippedGuidanceEstimator, replace=True)
if "dgpg_clipped" not in PRESETS:
    register_preset(
        Preset(
            "dgpg_clipped",
            critic={"kind": "central"},
            estimator={"kind": "dgpg_clipped"},
            label="DG-PG (clipped g)",
            description="DG-PG with the standardised guidance weight clipped (examples/custom_estimator.py)",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domain", default="cloud")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--clip", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=Path("runs/example-estimator"))
    args = parser.parse_args()
    for algo in ("dgpg_clipped", "dgpg"):
        learner = {"estimator": {"clip": args.clip}} if algo == "dgpg_clipped" else {}
        cfg = RunConfig(domain=args.domain, algo=algo, agents=args.agents, episodes=args.episodes,
                        learner=learner, out=args.out / algo)
        result = run_experiment(cfg)
        print(f"{algo:>12}: test reward of the checkpoint chosen on validation {result.best_test_reward:.2f} "
              f"(episode {result.best_episode}), final {result.final_test_reward:.2f} -> {result.out}")


if __name__ == "__main__":
    main()
