"""Compare DG-PG, MAPPO and IPPO over several seeds, with the domain's heuristics, via the Python API.

Every learner uses the same networks and PPO settings; all are evaluated on the same held-out
test scenarios. Writes ``table.md``, ``results.json`` and ``curves.png`` to ``--out``.

Run:  python examples/compare_learners.py --domain cloud --agents 50 --episodes 10 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from guidedmarl.config import build_config  # noqa: E402
from guidedmarl.plotting import set_reward_scale  # noqa: E402
from guidedmarl.experiment import RunResult  # noqa: E402
from guidedmarl.experiment import run_experiment as run  # noqa: E402

LEARNERS = ("dgpg", "mappo", "ippo")


def spread(values: list[float]) -> str:
    """``mean ± std`` (sample std over seeds; 0 for a single value)."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domain", default="cloud")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=list(LEARNERS), choices=LEARNERS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    args = parser.parse_args()

    results: dict[str, list[RunResult]] = {a: [] for a in args.algos}
    for algo in args.algos:
        for seed in args.seeds:
            cfg = build_config(
                {
                    "domain": args.domain,
                    "algo": algo,
                    "agents": args.agents,
                    "episodes": args.episodes,
                    "seed": seed,
                    "threads": args.threads,
                    "out": str(args.out / f"{algo}-s{seed}"),
                    # heuristics do not depend on the learner: evaluate them once per seed
                    "eval": {"heuristics": algo == args.algos[0]},
                }
            )
            res = run(cfg)
            results[algo].append(res)
            print(f"{algo} seed {seed}: best {res.best_test_reward:.2f} (ep {res.best_episode}), "
                  f"final {res.final_test_reward:.2f}, {res.seconds:.0f} s", flush=True)

    heuristics: dict[str, list[float]] = {}
    for res in results[args.algos[0]]:
        for name, ev in res.baselines.items():
            heuristics.setdefault(name, []).append(ev.mean)

    lines = [
        "| policy | best-checkpoint test reward | final test reward | final, sampled actions | best episode "
        "| wall-clock per run (s) |",
        "|---|---|---|---|---|---|",
    ]
    for algo, runs in results.items():
        lines.append(
            f"| {algo.upper()} | {spread([r.best_test_reward for r in runs])} | "
            f"{spread([r.final_test_reward for r in runs])} | "
            f"{spread([r.final_test_reward_other_mode for r in runs])} | "
            f"{spread([float(r.best_episode) for r in runs])} | {spread([r.seconds for r in runs])} |"
        )
    for name, values in sorted(heuristics.items(), key=lambda kv: -statistics.fmean(kv[1])):
        lines.append(f"| {name} (heuristic) | {spread(values)} | {spread(values)} | – | – | – |")
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table + "\n")
    payload = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "learners": {
            a: [
                {"seed": s, "best": r.best_test_reward, "best_episode": r.best_episode, "final": r.final_test_reward,
                 "final_sampled": r.final_test_reward_other_mode,
                 "seconds": r.seconds, "curve": [m.get("eval/test_reward") for m in r.metrics]}
                for s, r in zip(args.seeds, runs)
            ]
            for a, runs in results.items()
        },
        "heuristics": heuristics,
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=1))

    fig, ax = plt.subplots(figsize=(9, 4.2))
    for k, (algo, runs) in enumerate(results.items()):
        curves = [[m["eval/test_reward"] for m in r.metrics] for r in runs]
        episodes = [m["episode"] for m in runs[0].metrics]
        mean = [statistics.fmean(c[i] for c in curves) for i in range(len(curves[0]))]
        lo = [min(c[i] for c in curves) for i in range(len(curves[0]))]
        hi = [max(c[i] for c in curves) for i in range(len(curves[0]))]
        ax.plot(episodes, mean, marker="o", ms=3, color=f"C{k}", label=f"{algo.upper()} (mean of {len(runs)} seeds)")
        ax.fill_between(episodes, lo, hi, color=f"C{k}", alpha=0.15)
    for k, (name, values) in enumerate(sorted(heuristics.items(), key=lambda kv: -statistics.fmean(kv[1]))):
        ax.axhline(statistics.fmean(values), ls="--", color=f"C{k + 3}", lw=1, label=f"{name} (heuristic)")
    ax.set_xlabel("training episode (0: untrained policy)")
    ax.set_ylabel("test reward (40 held-out scenarios)")
    set_reward_scale(ax)
    ax.set_title(f"{args.domain}, N = {args.agents}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=120)
    print(table)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
