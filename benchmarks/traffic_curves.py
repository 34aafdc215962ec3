"""Learning curves of a traffic scale study with every heuristic as a line (UE, SO, day_to_day, ...).

The study's own figures draw the floor and the target only; route choice is read against the user
equilibrium, so this draws all heuristics of the study's ``scale.json``. One PNG per N: test reward
(mean over seeds, min-max band) against the training episode, for each learner; a symmetric-log y
axis where the curves span orders of magnitude.

    python benchmarks/traffic_curves.py docs/data/traffic/siouxfalls --out docs/img/traffic --name siouxfalls
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from guidedmarl.plotting import legend_right, plt, save_figure, set_reward_scale

LABELS = {"dgpg_exact": "DG-PG (exact)", "dgpg": "DG-PG", "mappo": "MAPPO", "ippo": "IPPO"}
STYLES = {"system_optimum": "--", "user_equilibrium": "-.", "day_to_day": ":", "free_flow": (0, (1, 3)),
          "random": (0, (5, 5))}


def _curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("test_reward")]
    return np.array([float(r["episode"]) for r in rows]), np.array([float(r["test_reward"]) for r in rows])


def plot(folder: Path, out: Path, name: str) -> list[Path]:
    meta = json.loads((folder / "scale.json").read_text())
    saved: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    for n_key, heur in meta["heuristics"].items():
        fig, ax = plt.subplots(figsize=(9, 4.2))
        lows = []
        for arm in meta["arms"]:
            runs = sorted((folder / "runs" / arm["name"]).glob(f"N{n_key}-s*/metrics.csv"))
            if not runs:
                continue
            curves = [_curve(p) for p in runs]
            length = min(len(c[1]) for c in curves)
            episodes = curves[0][0][:length]
            values = np.stack([c[1][:length] for c in curves])
            line, = ax.plot(episodes, values.mean(0), marker=".", label=f"{LABELS.get(arm['algo'], arm['algo'])} "
                            f"(mean of {len(curves)} seeds)")
            ax.fill_between(episodes, values.min(0), values.max(0), alpha=0.15, color=line.get_color())
            lows.append(float(values.mean(0).min()))
        for rule, value in heur.items():
            colour = "k" if rule in ("system_optimum", "user_equilibrium") else "0.5"
            ax.axhline(value, color=colour, lw=1, ls=STYLES.get(rule, "-"), label=f"{rule}: {value:.2f}")
        ax.set_xlabel("training episode (0: untrained policy)")
        ax.set_ylabel("test reward (held-out scenarios)")
        ax.set_title(f"traffic {name}, N = {n_key}: mean over seeds, min-max band")
        low = min(lows + list(heur.values()))
        top = max(heur.values())
        ax.set_ylim(low - 0.1 * abs(low), top + 0.05 * abs(top))
        set_reward_scale(ax)  # symmetric-log when the curves span orders of magnitude
        ax.grid(alpha=0.3)
        legend_right(ax)
        saved.append(save_figure(fig, out / f"{name}_N{n_key}.png"))
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/img/traffic"))
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    for path in plot(args.folder, args.out, args.name):
        print(path)


if __name__ == "__main__":
    main()
