"""Time of the cloud PPO update against N and ``ppo.chunk_samples`` (measurement only, not a test).

    python benchmarks/perf_update.py --agents 1500,15000 --chunks 16384,4096 --repeats 3 --out perf-update

For each N, in a fresh subprocess (peak memory per N), the trainer is built as
``guidedmarl run --domain cloud`` builds it (DG-PG exact, one environment, one thread), one
rollout is collected, and ``Trainer.update`` is timed on that same rollout for every chunk
size, alternating the chunk sizes ``--repeats`` times (A B A B ...). Each update starts from
the trained weights of the previous one, which changes nothing of its cost. Reported: the
median seconds per update, milliseconds per agent (update / N: flat when the update is
linear in N), the active samples of the rollout, the fitted exponent of the update time
against N for each chunk size, and the peak resident set size of each subprocess.

Writes ``benchmarks/results/<out>/update.json`` and ``update.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure_one(agents: int, chunks: list[int], repeats: int, threads: int) -> dict[str, object]:
    """The update times of one N (run inside the subprocess)."""
    from guidedmarl.config import RunConfig
    from guidedmarl.experiment import build

    config = RunConfig.model_validate(
        {"domain": "cloud", "agents": agents, "episodes": 2, "envs": 1, "seed": 0, "threads": threads, "out": "/tmp/unused"}
    )
    domain, trainer = build(config)
    seeds = domain.train_seeds(0, 1, config.seed)
    ro = trainer.collect(seeds)
    times: dict[int, list[float]] = {c: [] for c in chunks}
    for _ in range(repeats):
        for chunk in chunks:
            trainer.ppo.chunk_samples = chunk
            t0 = time.perf_counter()
            trainer.update(ro, 0.0)
            times[chunk].append(time.perf_counter() - t0)
    return {
        "N": agents,
        "active_samples": int(ro.active.sum()),
        "update_s": {str(c): statistics.median(t) for c, t in times.items()},
        "update_s_all": {str(c): t for c, t in times.items()},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _exponent(ns: list[int], ts: list[float]) -> float:
    """Least-squares slope of log t against log N."""
    xs, ys = [math.log(n) for n in ns], [math.log(t) for t in ts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def _markdown(rows: list[dict[str, object]], chunks: list[int], command: str) -> str:
    lines = ["# Cloud PPO update against N and chunk size", "", f"`{command}`", "",
             f"machine: {platform.platform()}, {platform.processor() or platform.machine()}; "
             f"{datetime.now().isoformat(timespec='seconds')}", "",
             "| N | active samples | " + " | ".join(f"chunk {c:,}: update s (ms / agent)" for c in chunks) + " | peak RSS, MiB |",
             "|---:|---:|" + "---:|" * len(chunks) + "---:|"]  # fmt: skip
    for row in rows:
        cells = [f"{row['update_s'][str(c)]:.2f} ({1000 * row['update_s'][str(c)] / row['N']:.2f})" for c in chunks]  # type: ignore[index]
        lines.append(f"| {row['N']:,} | {row['active_samples']:,} | " + " | ".join(cells) + f" | {row['peak_rss_mib']:,.0f} |")
    if len(rows) > 1:
        ns = [int(r["N"]) for r in rows]  # type: ignore[arg-type]
        fits = [f"chunk {c:,}: {_exponent(ns, [r['update_s'][str(c)] for r in rows]):.3f}" for c in chunks]  # type: ignore[index]
        lines += ["", "Fitted exponent of the update time against N: " + ", ".join(fits)]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="1500,15000", help="comma-separated N")
    p.add_argument("--chunks", default="16384,4096", help="comma-separated ppo.chunk_samples")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="benchmarks/results/<out> (default: timestamp)")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the subprocess's N
    args = p.parse_args()
    chunks = [int(c) for c in args.chunks.split(",")]
    if args.one is not None:
        print(json.dumps(measure_one(args.one, chunks, args.repeats, args.threads)))
        return
    rows = []
    for n in (int(a) for a in args.agents.split(",")):
        cmd = [sys.executable, __file__, "--one", str(n), "--chunks", args.chunks, "--repeats", str(args.repeats),
               "--threads", str(args.threads)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"N = {n}: {rows[-1]['update_s']}", flush=True)
    command = "python benchmarks/perf_update.py " + " ".join(sys.argv[1:])
    dest = HERE / "results" / (args.out or datetime.now().strftime("update-%Y%m%d-%H%M%S"))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "update.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    text = _markdown(rows, chunks, command)
    (dest / "update.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
