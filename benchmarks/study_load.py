"""Load test of the study store: many small cells run by several workers at once (issue 13).

Run on demand (not a test; pytest does not collect this file):

    python benchmarks/study_load.py                         # local workers 1 and 2, then local Ray with 2
    python benchmarks/study_load.py --seeds 10 --backends local:2

Each configuration runs ``guidedmarl study scale`` on the cloud domain with tiny cells
(N in {4, 6}, DG-PG and MAPPO, ``--seeds`` seeds, 1 training episode of 3 steps, 2 test and
1 validation scenario) into a fresh folder, then re-reads every file the study wrote (JSON,
CSV, YAML, checkpoints, images) and counts those that do not read back whole, and checks that
the study holds one finished ``cell.json`` per cell. It reports the cells per minute sustained
(cells / wall-clock of the study command, start-up of the workers included).

Writes ``benchmarks/results/study-load/<timestamp>/load.md`` and ``load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

from guidedmarl.atomic import unreadable_files

ROOT = Path(__file__).resolve().parents[1]


def run_one(backend: str, workers: int, seeds: int, out: Path) -> dict[str, object]:
    """One study into ``out``; the figures of the load test."""
    cmd = [sys.executable, "-m", "guidedmarl.cli", "study", "scale", "--domain", "cloud", "--agents", "4,6",
           "--algos", "dgpg,mappo", "--seeds", ",".join(map(str, range(seeds))), "--episodes", "1",
           "--baseline-budget", "1", "--threads", "1", "--workers", str(workers), "--backend", backend,
           "--out", str(out), "--set", "domain_config.horizon=3", "--set", "domain_config.warmup=1",
           "--set", "eval.test_scenarios=2", "--set", "eval.validation_scenarios=1"]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    cells = sorted(out.rglob("cell.json"))  # written (atomically) once a cell has finished
    finished = sum(1 for c in cells if "result" in json.loads(c.read_text()))
    failed = sorted(str(p.parent.relative_to(out)) for p in out.rglob("error.json"))
    expected = 2 * 2 * seeds  # N x algorithms x seeds (learner cells; heuristics cells come on top)
    runs = [c for c in cells if "heuristics" not in c.parts]
    return {"backend": backend, "workers": workers, "learner_cells": expected, "cells_found": len(cells),
            "learner_cells_finished": sum(1 for c in runs if "result" in json.loads(c.read_text())),
            "all_cells_finished": finished, "failed_cells": failed, "seconds": round(seconds, 1),
            "cells_per_minute": round(len(cells) / seconds * 60, 1), "unreadable_files": unreadable_files(out),
            "files_checked": sum(1 for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")),
            "returncode": done.returncode, "stderr_tail": done.stderr[-400:]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--backends", default="local:1,local:2,ray:2", help="backend:workers, comma separated")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or ROOT / "benchmarks" / "results" / "study-load" / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in args.backends.split(","):
        backend, workers = item.split(":")
        row = run_one(backend, int(workers), args.seeds, out / f"{backend}-{workers}")
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "stderr_tail"}))
    lines = ["# Study load test (cloud, tiny cells)", "",
             f"`python benchmarks/study_load.py --seeds {args.seeds} --backends {args.backends}`; "
             f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}", "",
             "| backend | workers | learner cells | cells found (with heuristics) | learner cells finished | files checked | unreadable | seconds | cells / minute | exit |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['backend']} | {r['workers']} | {r['learner_cells']} | {r['cells_found']} | "
                     f"{r['learner_cells_finished']} | {r['files_checked']} | {len(r['unreadable_files'])} | "
                     f"{r['seconds']} | {r['cells_per_minute']} | {r['returncode']} |")  # fmt: skip
    (out / "load.md").write_text("\n".join(lines) + "\n")
    (out / "load.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {out / 'load.md'}")


if __name__ == "__main__":
    main()
