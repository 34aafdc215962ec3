"""Cloud speed targets of issue 14 at one N, in one process (measurement only, not a test).

    python benchmarks/perf_cloud.py                          # N = 1500, 1 thread
    python benchmarks/perf_cloud.py --agents 1500 --heuristics --out perf-1500
    GUIDEDMARL_ALLOCATOR=system python benchmarks/perf_cloud.py --out perf-1500-system-malloc

What it measures, with the trainer built exactly as ``guidedmarl run`` builds it (default
settings, one training environment, the domain's evaluation mode):

* **rollout**: ``Trainer.collect`` (policy + environment + critic + guidance), median of
  ``--repeats`` rollouts after a warm-up training episode; agent-steps per second and the
  seconds of each part (the rollout's own timers);
* **bound**, in the same process on the same rollout: per step, the policy's forward and
  sampling on the recorded observations of the step plus one ``index_add_`` of every agent's
  (CPU, memory) demand into its chosen server: what a rollout cannot do without. The ratio
  rollout / bound is the issue's "within 2.5x of the bound";
* **training episode**: ``Trainer.train_episode`` (rollout + PPO update), median of
  ``--repeats``;
* **evaluation**: the 40 test scenarios played as the run plays them after an episode,
  ``--evaluations`` times (the environment keeps its scenario state from the third on),
  with the mean reward of each (they must be identical) and the ratio to a training episode,
  then once more through the rollout loop for the seconds of its policy and environment parts;
* **heuristics** (``--heuristics``): every heuristic of the domain on the test scenarios, once;
* peak resident set size of the process.

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


def _timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def measure(args: argparse.Namespace) -> dict[str, object]:
    import torch

    from guidedmarl.config import RunConfig
    from guidedmarl.evaluation import evaluate_heuristic, run_policy
    from guidedmarl.experiment import build

    try:
        from guidedmarl.runtime import keep_freed_memory
    except ImportError:  # a checkout from before guidedmarl.runtime (for before/after figures)
        def keep_freed_memory() -> str:
            return "system (no guidedmarl.runtime)"

    config = RunConfig.model_validate(
        {"domain": "cloud", "agents": args.agents, "episodes": 2, "envs": 1, "seed": 0, "threads": args.threads,
         "out": "/tmp/unused", "eval": {"test_scenarios": args.test_scenarios}}  # fmt: skip
    )
    domain, trainer = build(config)
    row: dict[str, object] = {"N": args.agents, "threads": torch.get_num_threads(), "algo": config.algo,
                              "allocator": keep_freed_memory(), "actor": type(trainer.actor.net).__name__}  # fmt: skip
    env, spec = trainer.env, trainer.env.spec
    seeds = domain.train_seeds(0, 1, config.seed)
    trainer.train_episode(seeds)  # warm-up

    rollout_s, ro = _timed(lambda: trainer.collect(seeds), args.repeats)
    agent_steps = spec.horizon * args.agents
    row["rollout_s"] = rollout_s
    row["rollout_agent_steps_per_s"] = agent_steps / rollout_s
    row["active_fraction"] = float(ro.active.float().mean())
    row["rollout_parts_s"] = {k: round(v, 4) for k, v in ro.seconds.items()}

    # the bound: policy forward + sampling on the same observations, and the demand scatter
    m = env.fleet.num_servers
    demand = torch.rand(1, args.agents, 2)
    candidates = env.candidates

    @torch.no_grad()
    def bound() -> None:
        for t in range(spec.horizon):
            obs, active = ro.obs[t], ro.active[t]
            mask = None if ro.action_mask is None else ro.action_mask[t]
            actions, _, _ = trainer.actor.sample(obs, active, mask)
            server = candidates.gather(1, actions[0].unsqueeze(-1)).squeeze(-1)
            torch.zeros(1, m, 2).index_add_(1, server, demand * active.unsqueeze(-1))

    bound_s, _ = _timed(bound, args.repeats)
    row["bound_s"] = bound_s
    row["bound_agent_steps_per_s"] = agent_steps / bound_s
    row["rollout_over_bound"] = rollout_s / bound_s

    episode_s, _ = _timed(lambda: trainer.train_episode(seeds), args.repeats)
    row["train_episode_s"] = episode_s

    test_env, test_seeds = domain.make_env(args.test_scenarios), domain.test_seeds(args.test_scenarios)
    greedy = domain.greedy_evaluation
    row["evaluation_mode"] = "greedy" if greedy else "sampled"
    evals = []
    for _ in range(args.evaluations):
        t0 = time.perf_counter()
        res = run_policy(test_env, test_seeds, lambda s: trainer.act(s, greedy), sample_seed=config.seed)
        evals.append({"seconds": time.perf_counter() - t0, "mean_reward": res.mean})
    row["evaluations"] = evals
    # where an evaluation's time goes: the same play through the rollout loop, whose timers
    # split it into the policy (the actor on every scenario's active agents) and the environment
    from guidedmarl.training.rollout import rollout

    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(config.seed)
        traj = rollout(test_env, lambda s: trainer.act(s, greedy), test_seeds)
    row["evaluation_parts_s"] = {k: round(v, 3) for k, v in traj.seconds.items()}
    row["evaluation_rewards_identical"] = len({e["mean_reward"] for e in evals}) == 1
    later = [e["seconds"] for e in evals[2:]] or [e["seconds"] for e in evals]
    row["evaluation_s"] = statistics.median(later)
    row["evaluation_over_train_episode"] = row["evaluation_s"] / episode_s

    if args.heuristics:
        h = {}
        for name, factory in domain.heuristics().items():
            t0 = time.perf_counter()
            res = evaluate_heuristic(factory, test_env, test_seeds, seed=config.seed)
            h[name] = {"seconds": time.perf_counter() - t0, "mean_reward": res.mean}
        row["heuristics"] = h
        row["heuristics_s"] = sum(v["seconds"] for v in h.values())
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _markdown(row: dict[str, object], command: str) -> str:
    lines = [f"# Cloud speed at N = {row['N']} ({row['threads']} thread(s), allocator {row['allocator']})", "",
             f"`{command}`", "", f"machine: {platform.platform()}, {platform.processor() or platform.machine()}; "
             f"{datetime.now().isoformat(timespec='seconds')}", "",
             "| quantity | value |", "|---|---:|"]  # fmt: skip
    show = [
        ("rollout, s (100 steps, 1 environment)", "rollout_s", "{:.3f}"),
        ("rollout agent-steps / s", "rollout_agent_steps_per_s", "{:,.0f}"),
        ("bound (policy + demand scatter), s", "bound_s", "{:.3f}"),
        ("bound agent-steps / s", "bound_agent_steps_per_s", "{:,.0f}"),
        ("rollout / bound", "rollout_over_bound", "{:.2f}"),
        ("active agents, fraction", "active_fraction", "{:.3f}"),
        ("training episode (rollout + update), s", "train_episode_s", "{:.3f}"),
        ("evaluation on the test scenarios, s", "evaluation_s", "{:.2f}"),
        ("evaluation / training episode", "evaluation_over_train_episode", "{:.2f}"),
        ("heuristics on the test scenarios, s", "heuristics_s", "{:.1f}"),
        ("peak RSS, MiB", "peak_rss_mib", "{:,.0f}"),
    ]
    for label, key, fmt in show:
        if key in row:
            lines.append(f"| {label} | {fmt.format(row[key])} |")
    lines += ["", f"rollout parts, s: {row['rollout_parts_s']}", "",
              "evaluations (s, mean reward): " + ", ".join(f"{e['seconds']:.2f} / {e['mean_reward']:.4f}"
                                                         for e in row["evaluations"]),  # type: ignore[union-attr]
              f"identical rewards: {row['evaluation_rewards_identical']}"]  # fmt: skip
    if "evaluation_parts_s" in row:
        lines.append(f"evaluation parts, s (one more evaluation, through the rollout loop's timers): {row['evaluation_parts_s']}")
    if "heuristics" in row:
        lines.append("heuristics (s, mean reward): " + ", ".join(
            f"{k} {v['seconds']:.1f} / {v['mean_reward']:.2f}" for k, v in row["heuristics"].items()))  # type: ignore[union-attr]
    return "\n".join(lines) + "\n"


def main() -> None:
    import sys

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="rollouts / training episodes timed (median)")
    p.add_argument("--evaluations", type=int, default=3, help="evaluations on the test scenarios")
    p.add_argument("--test-scenarios", type=int, default=40)
    p.add_argument("--heuristics", action="store_true", help="also time every heuristic on the test scenarios")
    p.add_argument("--out", default=None, help="benchmarks/results/<out> (default: timestamp)")
    args = p.parse_args()
    row = measure(args)
    out = HERE / "results" / (args.out or datetime.now().strftime("perf-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/perf_cloud.py " + " ".join(sys.argv[1:])
    (out / "perf.json").write_text(json.dumps({"command": command, **row}, indent=2))
    text = _markdown(row, command)
    (out / "perf.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
