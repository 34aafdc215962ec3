"""MAPPO, IPPO and DG-PG on MPE's simple_spread (mpe2), an outside benchmark, through the PettingZoo adapter.

Two commands. ``run`` trains the grid (one ``guidedmarl run`` per learner, N and seed; ``--jobs``
at a time) into OUT/nN/ALGO-sSEED; ``table`` reads those folders and writes the markdown
table, a JSON of every figure and the curves against environment steps::

    python benchmarks/mpe_spread.py run --out runs/mpe --jobs 2
    python benchmarks/mpe_spread.py table runs/mpe --img docs/img/mpe

``run`` skips cells whose folder already holds a finished run, so an interrupted grid resumes.

Settings shared by every learner (nothing tuned per learner): PPO with learning rate 7e-4,
10 epochs, one minibatch, hidden [64, 64] (the MAPPO paper's MPE choices), 25-step episodes,
the critic's state = the agents' observations concatenated (what MPE's ``state()`` returns),
evaluation every 10 updates on 20 validation and 40 test scenarios (the checkpoint is chosen
on validation; the test reward is reported). N = 3: 32 environments per update, 125 updates
(100,000 environment steps). N = 10: 16 environments, 40 updates (16,000 steps), which is
what 2 cores afford (the Python environment steps about 140 times a second at N = 10).
The rules (random, nearest landmark, centralised assignment) run on the same test scenarios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from guidedmarl.loggers import read_metrics

HORIZON = 25
GRID = {"n3": {"n": 3, "updates": 125, "envs": 32, "algos": ("dgpg", "mappo", "ippo"), "seeds": (0, 1, 2)},
        "n10": {"n": 10, "updates": 40, "envs": 16, "algos": ("dgpg", "mappo", "ippo"), "seeds": (0, 1, 2)},
        # the MAPPO paper's batch (128 environments per update), 5x the budget, one seed each
        "n3-e128": {"n": 3, "updates": 157, "envs": 128, "algos": ("dgpg", "mappo"), "seeds": (0,)}}  # fmt: skip
RULES = {"random": "RandomRule", "nearest_landmark": "NearestLandmarkRule", "assignment": "AssignmentRule"}


def command(algo: str, n: int, seed: int, updates: int, envs: int, out: Path) -> list[str]:
    """The ``guidedmarl run`` command of one cell."""
    sets = [f"domain_config.kwargs.N={n}", f"domain_config.horizon={HORIZON}", "domain_config.global_state=observations",
            "domain_config.model=guidedmarl_domains.mpe:SpreadModel",
            *(f"domain_config.heuristics.{k}=guidedmarl_domains.mpe:{v}" for k, v in RULES.items()),
            "ppo.learning_rate=7e-4", "ppo.update_epochs=10", "ppo.num_minibatches=1", "ppo.hidden=[64,64]",
            "eval.every=10", "eval.validation_scenarios=20"]  # fmt: skip
    args = ["guidedmarl", "run", "--domain", "pettingzoo:mpe2.simple_spread_v3", "--algo", algo, "--episodes",
            str(updates), "--envs", str(envs), "--seed", str(seed), "--threads", "1", "--quiet", "--out", str(out)]  # fmt: skip
    return args + [x for s in sets for x in ("--set", s)]


def _summary(run: Path) -> dict:
    path = run / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def run_grid(out: Path, jobs: int) -> None:
    cells = [(a, g["n"], s, g["updates"], g["envs"], out / name / f"{a}-s{s}")
             for name, g in GRID.items() for s in g["seeds"] for a in g["algos"]]  # fmt: skip
    todo = [c for c in cells if "best_test_reward" not in _summary(c[-1])]

    def one(cell: tuple) -> str:
        cell[-1].parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(command(*cell), capture_output=True, text=True)
        if result.returncode != 0:
            return f"FAILED {cell[-1]}: {result.stderr.strip()[-400:]}"
        return f"done {cell[-1]}"

    print(f"{len(todo)} of {len(cells)} cells to run")
    with ThreadPoolExecutor(jobs) as pool:
        for line in pool.map(one, todo):
            print(line, flush=True)


def _first_step_at(rows: list[dict], per_update: int, level: float) -> float | None:
    """Environment steps at the first evaluation whose test reward reaches ``level``."""
    for r in rows:
        if "eval/test_reward" in r and r["eval/test_reward"] >= level:
            return r["episode"] * per_update
    return None


def summarise(root: Path) -> dict:
    out: dict = {}
    for n_dir in sorted((p for p in root.glob("n*") if p.is_dir()), key=lambda p: (int(p.name[1:].split("-")[0]), p.name)):
        cell: dict = {}
        for run in sorted(p for p in n_dir.iterdir() if (p / "summary.json").is_file()):
            algo = run.name.rsplit("-s", 1)[0]
            summary = json.loads((run / "summary.json").read_text())
            if "best_test_reward" not in summary:  # still running
                continue
            config = yaml.safe_load((run / "config.yaml").read_text())
            cfg_envs, n = int(config["envs"]), int(summary["agents"])
            cell["_n"], cell["_envs"] = n, cfg_envs
            rows = read_metrics(run / "metrics.json")
            entry = cell.setdefault(algo, {"best": [], "final": [], "final_sampled": [], "steps": [], "seconds": [],
                                           "to_random": [], "to_nearest": []})  # fmt: skip
            entry["best"].append(summary["best_test_reward"])
            entry["final"].append(summary["final_test_reward"])
            entry["final_sampled"].append(summary["final_test_reward_other_mode"])
            entry["steps"].append(rows[-1]["episode"] * cfg_envs * HORIZON)
            entry["seconds"].append(summary.get("seconds", float("nan")))
            entry["to_random"].append(_first_step_at(rows, cfg_envs * HORIZON, summary["baselines"]["random"]))
            entry["to_nearest"].append(_first_step_at(rows, cfg_envs * HORIZON, summary["baselines"]["nearest_landmark"]))
            for name, value in summary["baselines"].items():  # the random rule is seeded with the run's seed
                cell.setdefault("_baselines_runs", {}).setdefault(name, []).append(value)
            cell.setdefault("_initial_runs", []).append(summary["initial_test_reward"])
        if "_n" in cell:
            cell["_baselines"] = {k: float(np.mean(v)) for k, v in cell["_baselines_runs"].items()}
            cell["_initial"] = float(np.mean(cell["_initial_runs"]))
            out[n_dir.name] = cell
    return out


def _pm(values: list[float]) -> str:
    v = np.array(values, dtype=float)
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"  # sample std over seeds


def _reached(steps: list[float | None]) -> str:
    """'k/n runs, median S steps': how many runs reached a level at an evaluation, and when."""
    hit = [s for s in steps if s is not None]
    return f"{len(hit)}/{len(steps)} runs" + (f", median {int(np.median(hit)):,} steps" if hit else "")


def table(stats: dict) -> str:
    lines = ["| N | envs per update | learner | runs | env steps | best (validation-chosen) | final | final, sampled | reached random rule | reached nearest-landmark rule |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for cell in stats.values():
        n = cell["_n"]
        for algo, e in ((k, v) for k, v in cell.items() if not k.startswith("_")):
            lines.append(f"| {n} | {cell['_envs']} | {algo} | {len(e['best'])} | {int(e['steps'][0]):,} | {_pm(e['best'])} | {_pm(e['final'])} "
                         f"| {_pm(e['final_sampled'])} | {_reached(e['to_random'])} | {_reached(e['to_nearest'])} |")  # fmt: skip
        b = cell["_baselines"]
        lines.append(f"| {n} | | initial policy / random / nearest landmark / assignment (mean over the runs' seeds) | | | "
                     f"{cell['_initial']:.1f} / {b['random']:.1f} / {b['nearest_landmark']:.1f} / {b['assignment']:.1f} | | | | |")  # fmt: skip
    return "\n".join(lines)


def plots(root: Path, stats: dict, img: Path) -> None:
    for name, cell in stats.items():
        b, n = cell["_baselines"], cell["_n"]
        lines = [f"--line={a.upper()}={root}/{name}/{a}-s*" for a in cell if not a.startswith("_")]
        hlines = [f"--hline={k.replace('_', ' ')}={v:.1f}" for k, v in b.items()]
        script = Path(__file__).with_name("plot_env_steps.py")
        subprocess.run([sys.executable, str(script), "--out", str(img / f"mpe_spread_{name}.png"), *lines, *hlines, "--scale", "linear",
                        "--title", f"simple_spread, N = {n}, {cell['_envs']} environments per update: test reward against environment steps"],
                       check=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train the grid")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--jobs", type=int, default=2)
    t = sub.add_parser("table", help="table, JSON and plots from the run folders")
    t.add_argument("root", type=Path)
    t.add_argument("--img", type=Path, default=None)
    args = parser.parse_args()
    if args.cmd == "run":
        run_grid(args.out, args.jobs)
        return
    stats = summarise(args.root)
    (args.root / "mpe_spread.json").write_text(json.dumps(stats, indent=1))
    print(table(stats))
    if args.img is not None:
        plots(args.root, stats, args.img)


if __name__ == "__main__":
    main()
