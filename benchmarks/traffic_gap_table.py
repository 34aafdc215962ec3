"""The UE -> SO gap each learner closes, from the outputs of ``guidedmarl study scale --domain traffic``.

For every study folder, N and learner: the validation-chosen ("best") and final test rewards, mean ±
sample std over seeds, and the fraction of the route-set gap they close,

    closed = (R - R_UE) / (R_SO - R_UE)

(0: the user equilibrium, what selfish drivers reach; 1: the system optimum; negative: worse than
the UE), computed per seed and then averaged, and the best policy's TSTT above the SO's, R / R_SO - 1
(the reward is minus the TSTT over a constant), beside the UE's, with R_UE and R_SO the ``user_equilibrium`` and
``system_optimum`` heuristics on the same test scenarios. The best heuristic other than the two
equilibria is printed alongside. Reads ``runs.csv`` and ``scale.json``; prints a Markdown table.

    python benchmarks/traffic_gap_table.py docs/data/traffic/braess docs/data/traffic/siouxfalls ...
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

LABELS = {"dgpg_exact": "DG-PG (exact)", "dgpg": "DG-PG", "mappo": "MAPPO", "ippo": "IPPO"}
EQUILIBRIA = ("user_equilibrium", "system_optimum")


def _mean_std(values: list[float], digits: int) -> str:
    a = np.asarray(values, dtype=float)
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return f"{a.mean():.{digits}f} ± {std:.{digits}f}"


def rows_of(folder: Path) -> list[str]:
    """Markdown rows of one study folder."""
    meta = json.loads((folder / "scale.json").read_text())
    config = meta["settings"].get("run_config", {})
    network = config.get("domain_config", {}).get("network", "siouxfalls")
    envs = config.get("envs", 1)
    mode = "sampled" if config.get("eval", {}).get("deterministic") is False else "greedy"
    with (folder / "runs.csv").open() as fh:
        runs = list(csv.DictReader(fh))
    out = []
    for n_key, heur in meta["heuristics"].items():
        ue, so = heur["user_equilibrium"], heur["system_optimum"]
        others = {k: v for k, v in heur.items() if k not in EQUILIBRIA}
        best_rule = max(others, key=others.__getitem__)
        for algo in dict.fromkeys(r["algo"] for r in runs):
            cell = [r for r in runs if r["algo"] == algo and r["N"] == n_key]
            if not cell:
                continue
            best = [float(r["best_test_reward"]) for r in cell]
            final = [float(r["final_test_reward"]) for r in cell]
            closed_best = [(b - ue) / (so - ue) for b in best]
            closed_final = [(f - ue) / (so - ue) for f in final]
            above = [100 * (b / so - 1) for b in best]
            digits = 3 if abs(so) < 20 else 2  # Anaheim's rewards span 11.3 to 12.9: one more digit
            out.append(
                f"| {network} | {n_key} | {envs} | {mode} | {LABELS.get(algo, algo)} | {cell[0]['episodes']} | "
                f"{_mean_std(best, digits)} | {_mean_std(final, digits)} | {_mean_std(closed_best, 2)} | "
                f"{_mean_std(closed_final, 2)} | {_mean_std(above, 1)} % | {100 * (ue / so - 1):.1f} % | {ue:.{digits}f} | "
                f"{so:.{digits}f} | {best_rule} {others[best_rule]:.{digits}f} |"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    print("| network | N | envs | evaluation | learner | episodes | best test reward | final test reward | "
          "gap closed (best) | gap closed (final) | best above SO | UE above SO | UE | SO | best other heuristic |")
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for folder in args.folders:
        for row in rows_of(folder):
            print(row)


if __name__ == "__main__":
    main()
