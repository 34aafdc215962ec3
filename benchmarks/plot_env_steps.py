"""Test reward against environment steps for runs of different batch sizes (sample efficiency).

Every run folder written by `guidedmarl run` or a study cell holds `config.yaml` (environments
per update `envs`, the domain's horizon) and `metrics.json` (one row per training episode,
`test_reward` on evaluation episodes). One update consumes `envs x horizon` environment
steps, so the x axis is `episode x envs x horizon`. Runs are grouped by a label given on the
command line as `LABEL=GLOB` (a glob of run folders); each group is drawn as its mean over
the runs, with a min-max band when there are several.

    python benchmarks/plot_env_steps.py --out docs/img/sample_efficiency_n10.png \\
        --line "DG-PG, 1 env=STUDY/runs/dgpg_exact/N10-s*" --line "MAPPO, 8 envs=B8/runs/mappo/N10-s0" \\
        --hline "best_fit=-23.2"
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from guidedmarl.loggers import read_metrics  # noqa: E402  (reads old and new metric names)


def curve(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(environment steps, test reward) of one run's evaluations."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    per_update = int(cfg["envs"]) * int(cfg["domain_config"]["horizon"])
    rows = [r for r in read_metrics(run / "metrics.json") if "eval/test_reward" in r]
    steps = np.array([r["episode"] * per_update for r in rows], dtype=float)
    return steps, np.array([r["eval/test_reward"] for r in rows], dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--line", action="append", default=[], help="LABEL=GLOB of run folders")
    parser.add_argument("--hline", action="append", default=[], help="LABEL=VALUE, a heuristic's test reward")
    parser.add_argument("--title", default="")
    parser.add_argument("--scale", choices=("symlog", "linear"), default="symlog", help="both axes (symlog: long ranges)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for k, spec in enumerate(args.line):
        label, pattern = spec.split("=", 1)
        runs = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "metrics.json").is_file())
        if not runs:
            raise SystemExit(f"no run folders match {pattern}")
        curves = [curve(r) for r in runs]
        steps = curves[0][0]
        values = np.stack([c[1][: len(steps)] for c in curves if len(c[1]) >= len(steps)])
        ax.plot(steps, values.mean(0), color=f"C{k}", lw=1.5, label=f"{label} ({len(values)} run{'s' * (len(values) > 1)})")
        if len(values) > 1:
            ax.fill_between(steps, values.min(0), values.max(0), color=f"C{k}", alpha=0.15)
    for k, spec in enumerate(args.hline):
        label, value = spec.split("=", 1)
        ax.axhline(float(value), ls="--", lw=1, color=f"C{len(args.line) + k}", label=label)
    if args.scale == "symlog":
        ax.set_xscale("symlog", linthresh=100)
        ax.set_yscale("symlog", linthresh=100)
    ax.set_xlim(left=0)
    ax.set_xlabel("environment steps (updates x environments x horizon)")
    ax.set_ylabel("test reward (40 held-out scenarios)")
    ax.set_title(args.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(args.out)


if __name__ == "__main__":
    main()
