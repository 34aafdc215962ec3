"""Test reward of every cloud heuristic at several N (measurement only, not a test).

    python benchmarks/heuristics_table.py                                  # N = 10,50,200,1000, 40 scenarios, 1 thread
    python benchmarks/heuristics_table.py --agents 10,50 --out /tmp/h.json

For every N: the cloud domain with default settings (``get_domain("cloud").from_config(N, {})``),
one batch of ``--scenarios`` environments on the domain's held-out scenarios
(``domain.test_seeds``), and every registered heuristic evaluated with
``guidedmarl.evaluation.evaluate_heuristic`` (seed ``--seed`` for the random rules), as
``guidedmarl run`` evaluates its baselines. The test reward is the mean over the scenarios of
the episode's team return (higher is better).

Prints a Markdown table (rows: heuristics in registry order, columns: N) and writes JSON with
the mean, the standard deviation over scenarios, every scenario's return and the evaluation
time of each (heuristic, N) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

HERE = Path(__file__).resolve().parent


def parse_agents(text: str) -> list[int]:
    try:
        agents = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--agents must be comma-separated integers, got {text!r}") from None
    if not agents or min(agents) < 1:
        raise argparse.ArgumentTypeError(f"--agents needs integers >= 1, got {text!r}")
    return agents


def measure(agents: list[int], scenarios: int, seed: int, say=print) -> dict[str, Any]:
    """``{"rewards": {name: {N: {...}}}, ...}`` for the cloud domain's heuristics."""
    import torch

    from guidedmarl import get_domain
    from guidedmarl.evaluation import evaluate_heuristic

    rewards: dict[str, dict[str, dict[str, Any]]] = {}
    servers: dict[str, int] = {}
    for n in agents:
        domain = get_domain("cloud").from_config(n, {})
        servers[str(n)] = int(domain.fleet.num_servers)
        env = domain.make_env(scenarios)
        seeds = domain.test_seeds(scenarios)
        for name, factory in domain.heuristics().items():
            t0 = time.perf_counter()
            res = evaluate_heuristic(factory, env, seeds, seed=seed)
            seconds = time.perf_counter() - t0
            rewards.setdefault(name, {})[str(n)] = {
                "mean": res.mean,
                "std": res.std,
                "returns": res.returns,
                "seconds": seconds,
            }
            say(f"N = {n:5d}  {name:24s} {res.mean:10.2f}  ({seconds:.1f} s)")
        del env
    return {"rewards": rewards, "servers": servers, "torch": torch.__version__}


def markdown(result: dict[str, Any]) -> str:
    agents = result["agents"]
    head = "| heuristic | " + " | ".join(f"N = {n}" for n in agents) + " |"
    rule = "|---|" + "---:|" * len(agents)
    rows = [
        f"| `{name}` | " + " | ".join(f"{by_n[str(n)]['mean']:.2f}" for n in agents) + " |"
        for name, by_n in result["rewards"].items()
    ]
    servers = ", ".join(f"N = {n}: M = {result['servers'][str(n)]}" for n in agents)
    note = (
        f"Mean test reward over {result['scenarios']} held-out scenarios (higher is better), "
        f"seed {result['seed']}, {result['threads']} thread(s); servers {servers}."
    )
    return "\n".join([head, rule, *rows, "", note])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=parse_agents, default=[10, 50, 200, 1000], help="comma-separated N")
    parser.add_argument("--scenarios", type=int, default=40, help="held-out test scenarios per N (default 40)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random rules (default 0)")
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / "heuristics_table.json", help="JSON file to write"
    )
    args = parser.parse_args(argv)
    if args.scenarios < 1 or args.threads < 1:
        parser.error("--scenarios and --threads must be >= 1")

    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    measured = measure(args.agents, args.scenarios, args.seed, say=lambda s: print(s, file=sys.stderr, flush=True))
    result = {
        "agents": args.agents,
        "scenarios": args.scenarios,
        "seed": args.seed,
        "threads": args.threads,
        "domain_config": {},
        **measured,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds": time.perf_counter() - t0,
    }
    table = markdown(result)
    result["table"] = table
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
