"""Scaling benchmark of DG-PG training (issue 6, measurement only).

Run on demand (not a test; pytest does not collect this file):

    python benchmarks/bench_scale.py                       # every domain, N = 10,100,1500,10000, 1 thread
    python benchmarks/bench_scale.py --agents 10,100 --threads 2 --out quick

For every registered domain (``guidedmarl.available_domains()``) and every N, a fresh
subprocess (so that peak memory does not accumulate) builds the DG-PG trainer exactly as
``guidedmarl run`` does and measures:

* rollout throughput (agent-steps / s of ``Trainer.collect``: policy + environment + guidance),
  with the run's training batch (``envs``) and with ``--rollout-envs`` parallel environments
  (up to ``--batched-max-n`` agents), since per-step overheads amortise over a batch;
* time per training episode, split into rollout, reference+guidance (``guidance_seconds``),
  update; ``model.reference`` alone on one context; one greedy evaluation on the test
  scenarios;
* peak resident set size (``ru_maxrss`` of the subprocess);
* the reference program of the domain's model, captured at that N, solved by every
  allocation layer ("waterfill" with its default sorted-breakpoint search, the same layer
  with 100-step bisection, "cvxpylayers") forward and forward+backward; cvxpylayers is
  skipped above ``--cvxpy-max-m`` variables per instance.

Writes ``benchmarks/results/<--out or timestamp>/`` with bench.md, bench.csv, bench.json and
time_per_episode.png (log-log, fitted exponent from N = 100 up in the legend).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# Per-domain settings of the benchmark (RunConfig fields); unknown domains use the defaults.
# A domain whose data fixes N (power: one agent per generator of a case) lists its sizes as
# (N, domain_config) pairs, used instead of --agents.
DOMAIN_SETTINGS: dict[str, dict[str, Any]] = {
    "cloud": {"envs": 1, "domain_config": {}},
    "power": {
        "envs": 1,
        "domain_config": {},
        "sizes": [
            (6, {"case": "case30"}),
            (54, {"case": "case118"}),
            (260, {"case": "pglib_opf_case1354_pegase"}),
            (1445, {"case": "pglib_opf_case9241_pegase"}),
            # night demand of case13659 falls below its units' total minimum at the default 0.65
            (4092, {"case": "pglib_opf_case13659_pegase", "load": {"min_factor": 0.8}}),
        ],
    },
}
DEFAULT_DOMAIN_SETTINGS: dict[str, Any] = {"envs": 1, "domain_config": {}}


# ---------------------------------------------------------------------------- worker
def _median_time(fn, repeats: int, budget: float) -> tuple[float, int]:
    """Median wall time of ``fn()`` over up to ``repeats`` calls (stop early past ``budget`` s)."""
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return statistics.median(times), len(times)


def _capture_program(model, context):
    """The (c, b, total, lower, upper) the model's allocation layer receives for ``context``."""
    import torch

    from guidedmarl.analytical.layers import AllocationLayer

    owner, attr = None, None
    for obj in (model, getattr(model, "inner", None), getattr(model, "model", None)):
        if obj is None:
            continue
        for name, value in vars(obj).items():
            if isinstance(value, AllocationLayer):
                owner, attr = obj, name
    if owner is None:
        return None
    real = getattr(owner, attr)
    captured: list[tuple] = []

    class Recorder(torch.nn.Module):
        def forward(self, *args):
            captured.append(tuple(a.detach().clone() for a in args))
            return real(*args)

    recorder = Recorder()
    setter = (lambda v: owner._modules.__setitem__(attr, v)) if isinstance(owner, torch.nn.Module) else (
        lambda v: setattr(owner, attr, v)
    )
    setter(recorder)
    try:
        model.reference(context)
    finally:
        setter(real)
    return captured[0] if captured else None


def _bench_layers(program, threads: int, cvxpy_max_m: int, budget: float) -> dict[str, Any]:
    import torch

    from guidedmarl.analytical.layers import CvxpyAllocationLayer, WaterFillingLayer

    c, b, total, lower, upper = program
    out: dict[str, Any] = {"layer_B": int(c.shape[0]), "layer_M": int(c.shape[1])}
    layers = {
        "waterfill": WaterFillingLayer(),
        "waterfill_bisection": WaterFillingLayer(search="bisection"),
        "cvxpylayers": CvxpyAllocationLayer(n_jobs=threads),
    }
    weights = torch.randn(c.shape, dtype=c.dtype, generator=torch.Generator().manual_seed(0))
    for name, layer in layers.items():
        if name == "cvxpylayers" and c.shape[1] > cvxpy_max_m:
            out[f"{name}_fwd_s"] = None
            out[f"{name}_fwdbwd_s"] = None
            out[f"{name}_skipped"] = f"M = {c.shape[1]} > --cvxpy-max-m {cvxpy_max_m}"
            continue

        def fwd() -> None:
            with torch.no_grad():
                layer(c, b, total, lower, upper)

        def fwdbwd() -> None:
            cc, bb, tt = (t.clone().requires_grad_(True) for t in (c, b, total))
            (layer(cc, bb, tt, lower, upper) * weights).sum().backward()

        reps = 20 if name.startswith("waterfill") else 3
        try:
            fwd()  # warm-up (cvxpylayers builds and canonicalises its problem here)
            out[f"{name}_fwd_s"], _ = _median_time(fwd, reps, budget)
            out[f"{name}_fwdbwd_s"], _ = _median_time(fwdbwd, reps, budget)
        except Exception as exc:  # a solver failure is a result, not a crash
            out[f"{name}_fwd_s"] = out.get(f"{name}_fwd_s")
            out[f"{name}_fwdbwd_s"] = None
            out[f"{name}_skipped"] = f"failed: {exc!r}"[:200]
    for kind in ("fwd", "fwdbwd"):
        w, cv = out.get(f"waterfill_{kind}_s"), out.get(f"cvxpylayers_{kind}_s")
        out[f"ratio_{kind}"] = cv / w if (w and cv) else None
    return out


def _bench_dispatch_backends(domain, max_variables: int, budget: float) -> dict[str, Any] | None:
    """Power-style domains (a ``ScenarioBank`` as ``domain.bank``): one scenario-day's
    reference program solved by each DC-OPF backend, as a ratio (cvxpylayers / sparse)."""
    bank = getattr(domain, "bank", None)
    if bank is None or not hasattr(bank, "program"):
        return None
    import numpy as np

    from guidedmarl_domains.power.reference import solve_dispatch
    from guidedmarl_domains.power.scenarios import make_scenarios

    horizon = domain.system.settings.horizon
    (scenario,) = make_scenarios(domain.system, [0])
    demand, offsets = scenario.demand[None, :horizon], scenario.flow_offset[None, :horizon]
    size = domain.num_agents * horizon
    out: dict[str, Any] = {"layer_B": 1, "layer_M": size}
    for backend in ("sparse", "cvxpylayers"):
        key = "waterfill" if backend == "sparse" else "cvxpylayers"  # the table's columns: structured, cvxpylayers
        if backend == "cvxpylayers" and size > max_variables:
            out[f"{key}_fwd_s"] = None
            out[f"{key}_skipped"] = f"G x T = {size} > --cvxpy-max-m {max_variables}"
            continue
        solve = lambda: solve_dispatch(bank.program, np.array(demand), np.array(offsets), [0], backend)  # noqa: E731
        solve()  # warm-up (problem construction)
        out[f"{key}_fwd_s"], _ = _median_time(solve, 3, budget)
    w, cv = out.get("waterfill_fwd_s"), out.get("cvxpylayers_fwd_s")
    out["ratio_fwd"] = cv / w if (w and cv) else None
    out["layer_names"] = "sparse (HiGHS/Clarabel, lazy lines) vs cvxpylayers, one day"
    return out


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One (domain, N) configuration; runs in its own process."""
    import resource

    import torch

    from guidedmarl.config import RunConfig
    from guidedmarl.evaluation import run_policy
    from guidedmarl.experiment import build

    torch.set_num_threads(args.threads)
    settings = DOMAIN_SETTINGS.get(args.domain, DEFAULT_DOMAIN_SETTINGS)
    config = RunConfig.model_validate(
        {
            "domain": args.domain,
            "algo": "dgpg",
            "agents": args.n,
            "episodes": args.episodes,
            "envs": settings["envs"],
            "seed": 0,
            "threads": args.threads,
            "out": "/tmp/unused",
            "domain_config": json.loads(args.domain_config) if args.domain_config else settings["domain_config"],
            "eval": {"test_scenarios": args.test_scenarios, "heuristics": False},
        }
    )
    row: dict[str, Any] = {"domain": args.domain, "N": args.n, "threads": args.threads, "envs": config.envs}
    if args.domain_config:
        row["domain_config"] = args.domain_config
    t0 = time.perf_counter()
    domain, trainer = build(config)
    row["build_s"] = time.perf_counter() - t0
    spec = trainer.env.spec
    row["horizon"] = spec.horizon

    episodes = []
    for ep in range(args.episodes):
        m = trainer.train_episode(domain.train_seeds(ep, config.envs, config.seed))
        episodes.append(m)
    # the first episode pays one-off costs (allocator warm-up); report the later ones if any
    measured = episodes[1:] if len(episodes) > 1 else episodes
    row["episodes_measured"] = len(measured)
    for key in ("rollout_seconds", "guidance_seconds", "update_seconds"):
        row[key.replace("_seconds", "_s")] = statistics.mean(m[f"time/{key}"] for m in measured)
    row["first_episode_s"] = episodes[0]["time/rollout_seconds"] + episodes[0]["time/update_seconds"]
    row["train_episode_s"] = row["rollout_s"] + row["update_s"]
    agent_steps = spec.horizon * config.envs * args.n
    row["rollout_agent_steps_per_s"] = agent_steps / row["rollout_s"]
    row["rollout_no_guidance_s"] = row["rollout_s"] - row["guidance_s"]
    # agent-steps per second of one training episode, update included
    row["trainer_SPS"] = statistics.mean(
        agent_steps / (m["time/rollout_seconds"] + m["time/update_seconds"]) for m in measured
    )
    if args.rollout_envs > config.envs and args.n <= args.batched_max_n:
        batched_config = config.model_copy(update={"envs": args.rollout_envs})
        batched_domain, batched = build(batched_config)
        batch_seeds = batched_domain.train_seeds(0, args.rollout_envs, config.seed)
        batched.collect(batch_seeds)  # warm-up
        t0 = time.perf_counter()
        batched.collect(batch_seeds)
        row["rollout_batched_envs"] = args.rollout_envs
        row["rollout_batched_agent_steps_per_s"] = spec.horizon * args.rollout_envs * args.n / (time.perf_counter() - t0)
        del batched, batched_domain
        torch.manual_seed(config.seed)

    # reference alone, on one context (E = training envs) in the middle of an episode
    env = trainer.env
    step = env.reset(domain.train_seeds(0, config.envs, config.seed))
    for _ in range(spec.horizon // 2):
        step = env.step(trainer.act(step, False))
    context = env.model_context()
    model = trainer.model
    row["reference_s"], _ = _median_time(lambda: model.reference(context), 20, 5.0)
    row["reference_per_episode_s"] = row["reference_s"] * spec.horizon

    # evaluation on the test scenarios (greedy), as run.run does after every episode
    test_env = domain.make_env(args.test_scenarios)
    seeds = domain.test_seeds(args.test_scenarios)
    t0 = time.perf_counter()
    run_policy(test_env, seeds, lambda s: trainer.act(s, True))
    row["eval_s"] = time.perf_counter() - t0
    row["test_scenarios"] = args.test_scenarios
    row["eval_per_scenario_s"] = row["eval_s"] / args.test_scenarios
    row["eval_40_est_s"] = row["eval_per_scenario_s"] * 40
    row["rss_after_train_eval_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # the reference program of a training step, through each allocation layer
    program = _capture_program(model, context)
    if program is not None:
        row.update(_bench_layers(program, args.threads, args.cvxpy_max_m, args.layer_budget))
    else:
        row.update(_bench_dispatch_backends(domain, args.cvxpy_max_m, args.layer_budget) or {})
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


# ---------------------------------------------------------------------------- driver
def machine_info(threads: int) -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gib": mem,
        "torch": torch.__version__,
        "torch_threads": threads,
        "date": datetime.now().isoformat(timespec="seconds"),
    }


def fit_exponent(ns: list[float], ts: list[float]) -> float | None:
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, ts) if n >= 100 and t and t > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def write_outputs(out: Path, rows: list[dict[str, Any]], info: dict[str, Any], command: str, wall: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "bench.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    exps: dict[str, dict[str, float | None]] = {}
    for dom in sorted({r["domain"] for r in rows if "error" not in r}):
        ok = [r for r in rows if r["domain"] == dom and "error" not in r]
        ns = [r["N"] for r in ok]
        exps[dom] = {
            "train_episode_s": fit_exponent(ns, [r["train_episode_s"] for r in ok]),
            "train_episode_plus_eval_s": fit_exponent(ns, [r["train_episode_s"] + r["eval_40_est_s"] for r in ok]),
            "eval_40_est_s": fit_exponent(ns, [r["eval_40_est_s"] for r in ok]),
        }
    (out / "bench.json").write_text(
        json.dumps({"machine": info, "command": command, "wall_s": wall, "exponents": exps, "rows": rows}, indent=1)
    )

    cols = [
        ("domain", "domain"),
        ("N", "N"),
        ("rollout_agent_steps_per_s", "rollout agent-steps/s"),
        ("rollout_batched_agent_steps_per_s", "rollout agent-steps/s, --rollout-envs envs"),
        ("train_episode_s", "train episode s (rollout+update)"),
        ("rollout_s", "rollout s"),
        ("guidance_s", "ref+guidance s"),
        ("reference_per_episode_s", "reference alone s/ep (horizon x 1 call)"),
        ("update_s", "update s"),
        ("eval_s", "eval s"),
        ("test_scenarios", "test scen."),
        ("eval_40_est_s", "eval s, 40 scen. (est.)"),
        ("peak_rss_mib", "peak RSS MiB"),
    ]
    lines = [
        "# Scaling benchmark",
        "",
        f"Command: `{command}`  ",
        f"Wall-clock: {wall:.0f} s",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "| " + " | ".join(h for _, h in cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['domain']} | {r['N']} | error: {r['error'][:120]} |")
            continue
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k, _ in cols) + " |")
    lines += [
        "",
        "Reference layer on the captured reference program (median wall time per call). Cloud: the allocation "
        "program of one step (structured = waterfill). Power: one scenario-day's multi-period DC-OPF "
        "(structured = the sparse backend; no backward, the reference is exogenous).",
        "",
    ]
    lcols = [
        ("domain", "domain"),
        ("N", "N"),
        ("layer_B", "B"),
        ("layer_M", "M"),
        ("waterfill_fwd_s", "structured fwd s (waterfill or sparse)"),
        ("waterfill_bisection_fwd_s", "waterfill (bisection) fwd s"),
        ("cvxpylayers_fwd_s", "cvxpylayers fwd s"),
        ("ratio_fwd", "ratio fwd"),
        ("waterfill_fwdbwd_s", "structured fwd+bwd s"),
        ("cvxpylayers_fwdbwd_s", "cvxpylayers fwd+bwd s"),
        ("ratio_fwdbwd", "ratio fwd+bwd"),
        ("cvxpylayers_skipped", "skipped"),
    ]
    lines += ["| " + " | ".join(h for _, h in lcols) + " |", "|" + "---|" * len(lcols)]
    for r in rows:
        if "error" not in r and "layer_M" in r:
            lines.append("| " + " | ".join(_fmt(r.get(k)) for k, _ in lcols) + " |")
    lines += ["", "Fitted exponents (log-log least squares, N >= 100):", ""]
    for dom, e in exps.items():
        lines.append(f"- {dom}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in e.items()))
    (out / "bench.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for dom in exps:
        ok = [r for r in rows if r["domain"] == dom and "error" not in r]
        ns = [r["N"] for r in ok]
        for key, label, style in (
            ("train_episode_s", "training episode (rollout + update)", "o-"),
            ("train_episode_plus_eval_s", "training episode + evaluation (40 scen.)", "s--"),
        ):
            ys = [r["train_episode_s"] + (r["eval_40_est_s"] if "eval" in key else 0) for r in ok]
            e = exps[dom][key]
            ax.plot(ns, ys, style, label=f"{dom}: {label}, slope {_fmt(e)} (N >= 100)")
    nmin = min(r["N"] for r in rows)
    nmax = max(r["N"] for r in rows)
    ax.plot([nmin, nmax], [0.01 * nmin / nmin, 0.01 * nmax / nmin], ":", color="grey", label="slope 1 (reference)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("agents N")
    ax.set_ylabel("seconds")
    ax.set_title(f"Time per training episode, {info['torch_threads']} torch thread(s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "time_per_episode.png", dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="10,100,1500,10000", help="comma-separated N")
    p.add_argument("--domains", default=None, help="comma-separated domains (default: all registered)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 or 2)")
    p.add_argument("--episodes", type=int, default=2, help="training episodes per N (the first is a warm-up)")
    p.add_argument("--test-scenarios", type=int, default=40, help="test scenarios of the evaluation")
    p.add_argument(
        "--test-scenarios-large", type=int, default=None,
        help="test scenarios for N >= --large-n (default: as --test-scenarios); eval is rescaled to 40 in the table",
    )
    p.add_argument("--large-n", type=int, default=10000)
    p.add_argument("--cvxpy-max-m", type=int, default=1000, help="skip cvxpylayers above this many variables")
    p.add_argument("--rollout-envs", type=int, default=8, help="parallel environments of the batched rollout timing")
    p.add_argument("--batched-max-n", type=int, default=1500, help="largest N of the batched rollout timing")
    p.add_argument("--layer-budget", type=float, default=60.0, help="seconds per layer timing loop")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds per (domain, N) subprocess")
    p.add_argument("--out", default=None, help="results/<out> (default: timestamp)")
    # internal: worker mode
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--domain", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--domain-config", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        print("BENCH_ROW " + json.dumps(worker(args)), flush=True)
        return

    import guidedmarl

    command = "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:])
    domains = args.domains.split(",") if args.domains else list(guidedmarl.available_domains())
    ns = [int(x) for x in args.agents.split(",")]
    out = HERE / "results" / (args.out or datetime.now().strftime("%Y%m%d-%H%M%S"))
    info = machine_info(args.threads)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    for dom in domains:
        fixed = DOMAIN_SETTINGS.get(dom, {}).get("sizes")
        sizes = [(n, c) for n, c in fixed if n <= max(ns)] if fixed else [(n, None) for n in ns]
        for n, domain_config in sizes:
            scen = args.test_scenarios_large if (args.test_scenarios_large and n >= args.large_n) else args.test_scenarios
            extra = ["--domain-config", json.dumps(domain_config)] if domain_config is not None else []
            cmd = [
                sys.executable, str(Path(__file__).resolve()), "--worker", "--domain", dom, "--n", str(n), *extra,
                "--threads", str(args.threads), "--episodes", str(args.episodes), "--test-scenarios", str(scen),
                "--cvxpy-max-m", str(args.cvxpy_max_m), "--layer-budget", str(args.layer_budget),
                "--rollout-envs", str(args.rollout_envs), "--batched-max-n", str(args.batched_max_n),
            ]
            t0 = time.perf_counter()
            print(f"[bench] {dom} N={n} ...", flush=True)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
                got = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_ROW ")]
                if proc.returncode != 0 or not got:
                    row = {"domain": dom, "N": n, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
                else:
                    row = json.loads(got[-1][len("BENCH_ROW "):])
            except subprocess.TimeoutExpired:
                row = {"domain": dom, "N": n, "error": f"timed out after {args.timeout:.0f} s"}
            row["config_wall_s"] = time.perf_counter() - t0
            print(f"[bench] {dom} N={n}: {json.dumps(row)}", flush=True)
            rows.append(row)
            write_outputs(out, rows, info, command, time.perf_counter() - start)
    print(f"[bench] wrote {out}")


if __name__ == "__main__":
    main()
