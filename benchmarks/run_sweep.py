"""Run a list of `guidedmarl run` variants and tabulate them (settings sweeps behind docs tables).

A sweep file has one variant per line: a name, then the `guidedmarl run` options of that
variant (shell words; `#` starts a comment). Options given with ``--common`` are added to
every line before the variant's own (later options win, as on the command line):

    l300   --algo dgpg_exact --set domain_config.overload_penalty=300
    env4   --algo dgpg_exact --envs 4

    python benchmarks/run_sweep.py SWEEP.txt --out runs/sweep --workers 2 \\
        --common "--domain cloud --episodes 10 --threads 1 --set eval.heuristics=false"

Each variant runs in its own process into ``OUT/<name>/`` (a variant whose ``summary.json``
exists is not run again). ``OUT/table.md`` and ``OUT/runs.csv`` list, per variant, the test
reward of the checkpoint chosen on the validation scenarios (``best``), its episode, the
final policy's test reward and the wall-clock seconds. With ``--table-only`` nothing runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def read_sweep(path: Path) -> list[tuple[str, list[str]]]:
    """(name, options) per non-empty line of a sweep file."""
    variants = []
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words:
            variants.append((words[0], words[1:]))
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: variant names must be unique")
    return variants


def run_variant(name: str, options: list[str], common: list[str], out: Path) -> int:
    folder = out / name
    if (folder / "summary.json").is_file():
        return 0
    cmd = ["guidedmarl", "run", *common, *options, "--quiet", "--out", str(folder)]
    with (out / f"{name}.log").open("w") as log:
        log.write(shlex.join(cmd) + "\n")
        log.flush()
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode


def table(variants: list[tuple[str, list[str]]], out: Path) -> str:
    rows = []
    for name, options in variants:
        path = out / name / "summary.json"
        if not path.is_file():
            rows.append({"variant": name, "options": shlex.join(options), "status": "missing"})
            continue
        s = json.loads(path.read_text())
        rows.append({
            "variant": name, "options": shlex.join(options), "status": "done",
            "best": s["best_test_reward"], "best_episode": s["best_episode"],
            "final": s["final_test_reward"], "seconds": s["seconds"],
        })
    with (out / "runs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["variant", "options", "status", "best", "best_episode", "final", "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| variant | options | best (test, chosen on validation) | episode | final | s |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if r["status"] != "done":
            lines.append(f"| {r['variant']} | `{r['options']}` | missing | | | |")
        else:
            lines.append(f"| {r['variant']} | `{r['options']}` | {r['best']:.1f} | {r['best_episode']} | "
                         f"{r['final']:.1f} | {r['seconds']:.0f} |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--common", default="", help="options added to every variant, one shell string")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    variants = read_sweep(args.sweep)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        common = shlex.split(args.common)
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            codes = list(pool.map(lambda v: run_variant(v[0], v[1], common, args.out), variants))
        failed = [v[0] for v, c in zip(variants, codes) if c != 0]
        if failed:
            print(f"failed (see OUT/<name>.log): {', '.join(failed)}", file=sys.stderr)
    print(table(variants, args.out), end="")


if __name__ == "__main__":
    main()
