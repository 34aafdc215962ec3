"""`run`: one complete experiment (train, evaluate, write the run directory).

The run directory holds:

* ``config.yaml``: the resolved configuration, domain settings included (re-runnable with
  ``guidedmarl run --config DIR/config.yaml``);
* ``metrics.csv`` and ``metrics.json``: one row per training episode (CleanRL metric names:
  ``episodic_return``, ``value_loss``, ``approx_kl``, ``clipfrac``, ``explained_variance``,
  ``SPS``; plus ``test_reward`` on evaluation episodes), after a row for episode 0 that
  holds the test reward of the untrained policy;
* ``baselines.json``: each heuristic's reward on the same held-out scenarios;
* ``summary.json``: best-checkpoint and final test reward (plus the final policy evaluated
  in the other action mode: sampled if evaluation is greedy), wall-clock time;
* ``learning_curve.png``; ``best.pt`` / ``final.pt``: trainer checkpoints.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from guidedmarl.analytical.surrogates import wrap_surrogate
from guidedmarl.config import RunConfig
from guidedmarl.domain import Domain, get_domain
from guidedmarl.evaluation import EvalResult, evaluate_heuristic, run_policy
from guidedmarl.guidance.estimator import GuidedEstimator
from guidedmarl.plotting import plot_learning_curve
from guidedmarl.training.trainer import Trainer


@dataclass
class RunResult:
    """What a run produced (also written to ``out``)."""

    out: Path
    metrics: list[dict[str, float]]
    baselines: dict[str, EvalResult]
    best_test_reward: float
    best_episode: int
    final_test_reward: float
    final_test_reward_other_mode: float
    seconds: float


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch from the single run seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build(config: RunConfig) -> tuple[Domain, Trainer]:
    """Domain and trainer for a configuration (seeds the global generators first)."""
    seed_everything(config.seed)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    domain = get_domain(config.domain).from_config(config.agents, config.domain_config)
    use_guidance = config.algo == "dgpg"
    model = wrap_surrogate(domain.make_model(), config.guidance.surrogate, config.seed) if use_guidance else None
    estimator = GuidedEstimator(
        config.guidance.alpha,
        config.guidance.scaling,
        enabled=use_guidance,
        exact_difference=config.guidance.exact_difference,
    )
    trainer = Trainer(
        domain.make_env(config.envs),
        config.algo,
        config.ppo,
        estimator,
        model,
        seed=config.seed,
        total_episodes=config.episodes,
    )
    return domain, trainer


def resolved_config(config: RunConfig, domain: Domain) -> dict[str, Any]:
    """The configuration with every default filled in, domain settings included."""
    data = config.model_dump(mode="json")
    data["domain_config"] = domain.settings.model_dump(mode="json")
    data["agents"] = domain.num_agents  # resolved: the domain's default when not given
    # the thread count changes the order of floating-point sums, hence the numbers of a run:
    # record it so that re-running this config reproduces the run exactly
    data["threads"] = config.threads or torch.get_num_threads()
    return data


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows of differing keys as one CSV: the columns are the union, in first-seen order."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _write_metrics(out: Path, metrics: list[dict[str, float]]) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    write_csv(out / "metrics.csv", metrics)


def run(
    config: RunConfig,
    on_episode: Callable[[int, dict[str, float]], None] | None = None,
) -> RunResult:
    """Train ``config.algo`` on ``config.domain`` and write the run directory.

    Args:
        config: a validated :class:`RunConfig`.
        on_episode: called after every training episode with (episode, metrics), e.g. to
            drive a progress bar.
    """
    start = time.perf_counter()
    domain, trainer = build(config)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(resolved_config(config, domain), sort_keys=False))

    test_env = domain.make_env(config.eval.test_scenarios)
    test_seeds = domain.test_seeds(config.eval.test_scenarios)
    baselines: dict[str, EvalResult] = {}
    if config.eval.heuristics:
        for name, factory in domain.heuristics().items():
            baselines[name] = evaluate_heuristic(factory, test_env, test_seeds, seed=config.seed)
        (out / "baselines.json").write_text(json.dumps({k: v.as_dict() for k, v in baselines.items()}, indent=1))

    def evaluate() -> EvalResult:
        return run_policy(test_env, test_seeds, lambda s: trainer.act(s, config.eval.deterministic))

    # episode 0: the untrained policy, so that curves start where learning starts
    initial = evaluate()
    metrics: list[dict[str, float]] = [{"episode": 0.0, "test_reward": initial.mean, "test_reward_std": initial.std}]
    best, best_episode, final = -float("inf"), -1, float("nan")
    for episode in range(config.episodes):
        row: dict[str, float] = {"episode": float(episode + 1)}
        row.update(trainer.train_episode(domain.train_seeds(episode, config.envs, config.seed)))
        last = episode + 1 == config.episodes
        if (episode + 1) % config.eval.every == 0 or last:
            t0 = time.perf_counter()
            result = evaluate()
            row["test_reward"] = result.mean
            row["test_reward_std"] = result.std
            row["eval_seconds"] = time.perf_counter() - t0
            for k, v in result.info.items():
                row[f"test_{k}"] = v
            final = result.mean
            if result.mean > best:
                best, best_episode = result.mean, episode + 1
                torch.save(trainer.state_dict(), out / "best.pt")
        metrics.append(row)
        _write_metrics(out, metrics)
        if on_episode is not None:
            on_episode(episode, row)
    torch.save(trainer.state_dict(), out / "final.pt")
    # the final policy in the other action mode (sampled if evaluation is greedy, and vice
    # versa): a greedy policy can herd agents onto one option, a sampled one spreads them
    other_mode = not config.eval.deterministic
    other = run_policy(test_env, test_seeds, lambda s: trainer.act(s, other_mode)).mean
    seconds = time.perf_counter() - start
    summary = {
        "domain": config.domain,
        "algo": config.algo,
        "agents": domain.num_agents,
        "episodes": config.episodes,
        "seed": config.seed,
        "initial_test_reward": initial.mean,
        "best_test_reward": best,
        "best_episode": best_episode,
        "final_test_reward": final,
        "evaluation_mode": "greedy" if config.eval.deterministic else "sampled",
        "final_test_reward_other_mode": other,
        "baselines": {k: v.mean for k, v in baselines.items()},
        "seconds": seconds,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_baselines = {k: baselines[k].mean for k in (domain.plot_baselines or tuple(baselines)) if k in baselines}
    plot_learning_curve(
        metrics,
        plot_baselines,
        out / "learning_curve.png",
        f"{config.algo.upper()} on {config.domain}, N = {domain.num_agents}, seed {config.seed}",
    )
    return RunResult(out, metrics, baselines, best, best_episode, final, other, seconds)
