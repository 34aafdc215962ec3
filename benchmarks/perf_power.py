"""Power speed target of issue 14: reference plus guidance as a share of a training step.

    python benchmarks/perf_power.py                                   # case9241, N = 1445, 1 thread
    python benchmarks/perf_power.py --case case118 --out perf-power-118
    python benchmarks/perf_power.py --overload-potential 0 --out perf-power-1445-op0   # the quadratic potential

One process, the trainer built exactly as ``guidedmarl run --domain power`` builds it (default
settings, one training environment). After a warm-up episode on every training scenario
measured (so their references are solved and cached, as in a run after its first pass over
the pool), it alternates ``--repeats`` training episodes with each guidance path:

* ``gram``: the weights from the G x G Gram matrix of the fixed network (the default,
  :class:`guidedmarl.analytical.linear_outputs.LinearOutputModel`);
* ``backward``: the generic path, a backward pass through the state x = [p/s, f/F, balance]
  (``gram_guidance = False``), as before 2026-12-02.

With the overload potential (``domain_config.overload_potential`` lambda > 0, the default 100;
``--overload-potential`` sets it) the Gram path adds the overload term's gradient through the
rows of the lines beyond their limits, with the flows computed only for the lines some action of
the period can take to their limit (from the pre-dispatch flows and the ramps); with 0 it is the
Gram matrix alone.

For each: median training-episode seconds (rollout + PPO update), the rollout's own guidance
timer (reference lookup + weights, summed over the episode's steps) and its share of the
training episode; the weights of both paths on one recorded step (max relative difference).
Separately: the reference solve of one new scenario (the DC-OPF of one day, done once per
scenario at its first reset and then cached), and peak resident memory.

Writes ``benchmarks/results/<out>/perf.json`` and ``perf.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASE_AGENTS = {"case30": 6, "case118": 54, "pglib_opf_case1354_pegase": 260, "pglib_opf_case9241_pegase": 1445}


def measure(args: argparse.Namespace) -> dict[str, object]:
    import torch

    from guidedmarl.config import RunConfig
    from guidedmarl.experiment import build
    from guidedmarl.guidance.weights import guidance_weights

    config = RunConfig.model_validate(
        {"domain": "power", "episodes": 2, "envs": 1, "seed": 0, "threads": args.threads, "out": "/tmp/unused",
         "domain_config": {"case": args.case, **({} if args.overload_potential is None
                                                  else {"overload_potential": args.overload_potential})},
         "eval": {"test_scenarios": 1}}  # fmt: skip
    )
    domain, trainer = build(config)
    model = trainer.estimator.model
    seeds = domain.train_seeds(0, 1, config.seed)
    row: dict[str, object] = {"case": args.case, "N": domain.num_agents, "threads": torch.get_num_threads(),
                              "overload_potential": domain.settings.overload_potential,
                              "lines": int(domain.system.num_lines), "horizon": trainer.env.spec.horizon}  # fmt: skip
    trainer.train_episode(seeds)  # warm-up: solves and caches this scenario's reference

    paths = {"gram": True, "backward": False}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in paths}
    for _ in range(args.repeats):
        for name, gram in paths.items():  # alternated, so drifts of a shared machine hit both
            model.gram_guidance = gram
            t0 = time.perf_counter()
            metrics = trainer.train_episode(seeds)
            times[name].append((time.perf_counter() - t0, metrics["time/guidance_seconds"]))
    model.gram_guidance = True
    for name, pairs in times.items():
        episode = statistics.median(p[0] for p in pairs)
        guidance = statistics.median(p[1] for p in pairs)
        row[name] = {"train_episode_s": episode, "guidance_s": guidance, "guidance_share": guidance / episode}

    # the two paths' weights on one step of a fresh rollout
    env = trainer.env
    env.reset(seeds)
    actions = torch.randn(1, domain.num_agents, 1, generator=torch.Generator().manual_seed(0))
    mean = torch.zeros_like(actions)
    ctx = env.model_context()
    fast = guidance_weights(model, actions, ctx, exact_difference=False, mean_action=mean)
    slow = guidance_weights(model, actions, ctx, exact_difference=False, mean_action=mean, structured=False)
    row["max_relative_difference"] = float((fast - slow).abs().max() / slow.abs().max())
    reachable = model.reachable_lines(ctx) if hasattr(model, "reachable_lines") else None
    row["reachable_lines"] = None if reachable is None else int(reachable.sum())

    new_seed = 10_000 + args.repeats
    t0 = time.perf_counter()
    env.reset([new_seed])
    row["reference_new_scenario_s"] = time.perf_counter() - t0
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _markdown(row: dict[str, object], command: str) -> str:
    g, b = row["gram"], row["backward"]
    assert isinstance(g, dict) and isinstance(b, dict)
    lines = [
        f"# Power guidance at N = {row['N']} ({row['case']}, L = {row['lines']}, {row['threads']} thread(s), "
        f"overload_potential {row['overload_potential']:g})", "",
        f"`{command}`", "",
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}; "
        f"{datetime.now().isoformat(timespec='seconds')}", "",
        "| guidance path | training episode, s | reference + guidance, s | share of the episode |",
        "|---|---:|---:|---:|",
        f"| Gram matrix{' + overloaded lines' if row['overload_potential'] else ''} (default) | {g['train_episode_s']:.3f} | {g['guidance_s']:.3f} | {100 * g['guidance_share']:.1f} % |",
        f"| backward pass through x | {b['train_episode_s']:.3f} | {b['guidance_s']:.3f} | "
        f"{100 * b['guidance_share']:.1f} % |", "",
        f"* {row['horizon']} steps per episode; medians of the alternated repeats",
        f"* max |difference| of the two paths' weights over max |weight|: {row['max_relative_difference']:.2g}",
        *([] if row["reachable_lines"] is None else [
            f"* lines whose flows the overload term computed on that step (the others cannot reach their "
            f"limit within one period's ramps): {row['reachable_lines']} of {row['lines']}"]),
        f"* reference of one new scenario (a day's DC-OPF, solved once per scenario and cached): "
        f"{row['reference_new_scenario_s']:.2f} s",
        f"* peak resident memory: {row['peak_rss_mib']:.0f} MiB",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="pglib_opf_case9241_pegase", choices=sorted(CASE_AGENTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overload-potential", type=float, default=None,
                        help="domain_config.overload_potential (default: the domain's)")
    parser.add_argument("--repeats", type=int, default=5, help="training episodes per guidance path")
    parser.add_argument("--out", default=None, help="results/<out> (default: perf-power-<N>)")
    args = parser.parse_args()
    row = measure(args)
    out = HERE / "results" / (args.out or f"perf-power-{row['N']}")
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/perf_power.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
    )
    (out / "perf.json").write_text(json.dumps(row, indent=2) + "\n")
    (out / "perf.md").write_text(_markdown(row, command))
    print((out / "perf.md").read_text())


if __name__ == "__main__":
    main()
