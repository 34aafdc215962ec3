"""Time of the option-scorer actor against the chunk size it runs in (measurement only).

    python benchmarks/perf_chunks.py                          # the cloud actor, 40 x 840 agents
    python benchmarks/perf_chunks.py --agents 6720 --out perf-chunks-6720

The actor is the cloud default (8 options of 8 features, 16 common features, 64-64 hidden
units, shared weights). Two measurements, each the median of ``--repeats`` alternated passes:

* **inference**: ``Actor._net`` without gradients on ``--agents`` observations, with
  ``Actor.inference_chunk`` set to each size (40 x 840 = the active agents of one evaluation
  step at N = 1500);
* **update**: forward and backward of the summed logits over the same observations in
  chunks of each size (the trainer's ``ppo.chunk_samples`` accumulates gradients this way);
* **fold**: at the default inference chunk, the scorer's forward (and forward + backward)
  through its folded sigmoid layers (what ``AgentMLP.forward`` computes without gradients)
  against its linear-tanh layers (``AgentMLP.body``, what the PPO update differentiates).

Writes ``benchmarks/results/<out>/perf.json`` and ``perf.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(args: argparse.Namespace) -> dict[str, object]:
    import torch

    from guidedmarl.training.networks import Actor

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    options, features, common = 8, 8, 16
    actor = Actor(1, options * features + common, [64, 64], True, num_actions=options, option_features=features)
    obs = torch.randn(args.agents, options * features + common)
    sizes = [int(s) for s in args.chunks.split(",")]
    inference: dict[int, list[float]] = {s: [] for s in sizes}
    update: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(args.repeats):
        for size in sizes:  # alternated, so drifts of a shared machine hit every size
            actor.inference_chunk = size
            with torch.no_grad():
                t0 = time.perf_counter()
                actor._net(obs)
                inference[size].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for part in obs.split(size):
                actor._net(part).sum().backward()
            update[size].append(time.perf_counter() - t0)
    fold = _fold_comparison(actor, obs, args.repeats)
    return {
        "agents": args.agents, "threads": args.threads, "repeats": args.repeats, "fold_ms": fold,
        "inference_ms": {s: 1e3 * statistics.median(v) for s, v in inference.items()},
        "update_ms": {s: 1e3 * statistics.median(v) for s, v in update.items()},
    }  # fmt: skip


def _fold_comparison(actor, obs, repeats: int) -> dict[str, float]:
    """Median ms of the option scorer through folded layers and through ``body`` (linear-tanh)."""
    import torch

    scorer = actor.net
    k, f = scorer.num_options, scorer.option_features
    first, rest = scorer.scorer.body[0], scorer.scorer.body[1:]

    def tanh_layers(x):
        blocks = x[..., : k * f].unflatten(-1, (k, f))
        w, b = first.weight[0], first.bias[0]
        hidden = torch.matmul(blocks, w[:f]).add_(torch.nn.functional.linear(x[..., k * f :], w[f:].T, b).unsqueeze(-2))
        return rest(hidden).squeeze(-1)

    def folded_layers(x):  # the folded path whatever the gradient mode (the actor takes it without gradients)
        folded = scorer.scorer.folded_layers()
        blocks = x[..., : k * f].unflatten(-1, (k, f))
        w, b = folded[0][0][0], folded[0][1][0]
        hidden = torch.matmul(blocks, w[:f]).add_(torch.nn.functional.linear(x[..., k * f :], w[f:].T, b).unsqueeze(-2))
        return scorer.scorer.forward_from(hidden, folded, first_done=True).squeeze(-1)

    chunk = actor.inference_chunk
    paths = {"folded": folded_layers, "linear_tanh": tanh_layers}
    times: dict[str, list[float]] = {f"{name}_{kind}": [] for name in paths for kind in ("inference", "update")}
    for _ in range(repeats):
        for name, net in paths.items():
            with torch.no_grad():
                t0 = time.perf_counter()
                for part in obs.split(chunk):
                    net(part)
                times[f"{name}_inference"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for part in obs.split(chunk):
                net(part).sum().backward()
            times[f"{name}_update"].append(time.perf_counter() - t0)
    return {key: 1e3 * statistics.median(v) for key, v in times.items()}


def _markdown(row: dict[str, object], command: str) -> str:
    inf, upd = row["inference_ms"], row["update_ms"]
    assert isinstance(inf, dict) and isinstance(upd, dict)
    lines = [
        f"# Option-scorer actor against its chunk size ({row['agents']} agents, {row['threads']} thread(s))", "",
        f"`{command}`", "",
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}; "
        f"{datetime.now().isoformat(timespec='seconds')}", "",
        "| chunk, agents | hidden layer per chunk, MiB | inference, ms | forward + backward, ms |",
        "|---:|---:|---:|---:|",
    ]  # fmt: skip
    for size in inf:
        mib = min(int(size), int(row["agents"])) * 8 * 64 * 4 / 2**20
        lines.append(f"| {int(size):,} | {mib:.1f} | {inf[size]:.1f} | {upd[size]:.1f} |")
    fold = row["fold_ms"]
    assert isinstance(fold, dict)
    lines += [
        "", "At the default inference chunk, the scorer through folded sigmoid layers against linear-tanh layers:", "",
        "| layers | inference, ms | forward + backward, ms |", "|---|---:|---:|",
        f"| folded (inference) | {fold['folded_inference']:.1f} | {fold['folded_update']:.1f} |",
        f"| linear-tanh (the update; before 2026-12-03 also inference) | {fold['linear_tanh_inference']:.1f} | {fold['linear_tanh_update']:.1f} |",
    ]  # fmt: skip
    lines += ["", f"medians of {row['repeats']} alternated passes"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=40 * 840)
    parser.add_argument("--chunks", default="32768,16384,8192,4096,2048,1024,512")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="perf-chunks")
    args = parser.parse_args()
    row = measure(args)
    out = HERE / "results" / args.out
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/perf_chunks.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items())
    (out / "perf.json").write_text(json.dumps(row, indent=2) + "\n")
    (out / "perf.md").write_text(_markdown(row, command))
    print((out / "perf.md").read_text())


if __name__ == "__main__":
    main()
