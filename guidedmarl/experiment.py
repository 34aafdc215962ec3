"""One experiment: build the domain and trainer, train, evaluate, write the run directory.

:func:`build` turns a :class:`RunConfig` into a domain and a trainer; :func:`run_experiment`
trains it. After every ``eval.every`` training episodes the greedy policy is evaluated on
the *validation* scenarios (the best checkpoint is chosen there) and on the *test*
scenarios (reported); the two sets are seeded apart from each other and from training
(:meth:`Domain.validation_seeds`, :meth:`Domain.test_seeds`). With
``eval.validation_scenarios = 0`` the best checkpoint is chosen on the test scenarios, as
the paper's "best checkpoint reward" does (an optimistic figure: it selects on the data it
reports).

The run directory holds:

* ``config.yaml``: the resolved configuration, domain settings included (re-runnable with
  ``guidedmarl run --config DIR/config.yaml``);
* ``metrics.csv`` and ``metrics.json``: one row per training episode (CleanRL metric names:
  ``episodic_return``, ``value_loss``, ``approx_kl``, ``clipfrac``, ``explained_variance``,
  ``SPS``; plus ``validation_reward`` and ``test_reward`` on evaluation episodes), after a
  row for episode 0 that holds the rewards of the untrained policy;
* ``baselines.json``: each heuristic's reward on the same held-out scenarios;
* ``summary.json``: the test reward of the checkpoint chosen on validation
  (``best_test_reward``, episode ``best_episode``) and of the final policy, the test-selected
  maximum for comparison with the paper (``best_test_reward_on_test``), the final policy in
  the other action mode (sampled if evaluation is greedy), wall-clock time;
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

from guidedmarl.config import RunConfig
from guidedmarl.domain import Domain, get_domain
from guidedmarl.evaluation import EvalResult, evaluate_heuristic, run_policy
from guidedmarl.learners import preset_label
from guidedmarl.plotting import plot_learning_curve
from guidedmarl.training.trainer import Trainer


@dataclass
class RunResult:
    """What a run produced (also written to ``out``)."""

    out: Path
    metrics: list[dict[str, float]]
    baselines: dict[str, EvalResult]
    best_test_reward: float  # test reward of the checkpoint chosen on validation
    best_episode: int
    final_test_reward: float
    final_test_reward_other_mode: float
    seconds: float
    best_test_reward_on_test: float = float("nan")  # the maximum test reward (selected on test)


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
    trainer = Trainer(
        domain.make_env(config.envs),
        config.ppo,
        config.learner,
        domain.make_model(),
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
    if data["eval"]["deterministic"] is None:  # the domain's evaluation mode, written out
        data["eval"]["deterministic"] = domain.greedy_evaluation
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


def run_experiment(
    config: RunConfig,
    on_episode: Callable[[int, dict[str, float]], None] | None = None,
) -> RunResult:
    """Train the learner ``config.algo`` on ``config.domain`` and write the run directory.

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
    n_val = config.eval.validation_scenarios
    val_env = domain.make_env(n_val) if n_val else None
    val_seeds = domain.validation_seeds(n_val)
    baselines: dict[str, EvalResult] = {}
    if config.eval.heuristics:
        for name, factory in domain.heuristics().items():
            baselines[name] = evaluate_heuristic(factory, test_env, test_seeds, seed=config.seed)
        (out / "baselines.json").write_text(json.dumps({k: v.as_dict() for k, v in baselines.items()}, indent=1))

    greedy = domain.greedy_evaluation if config.eval.deterministic is None else config.eval.deterministic

    def act(step: Any) -> Any:
        return trainer.act(step, greedy)

    def evaluate(row: dict[str, float]) -> tuple[float, float]:
        """(selection score, test reward) of the current policy; fills ``row``."""
        test = run_policy(test_env, test_seeds, act)
        row["test_reward"], row["test_reward_std"] = test.mean, test.std
        for k, v in test.info.items():
            row[f"test_{k}"] = v
        if val_env is None:
            return test.mean, test.mean
        val = run_policy(val_env, val_seeds, act)
        row["validation_reward"] = val.mean
        return val.mean, test.mean

    # episode 0: the untrained policy, so that curves start where learning starts
    first: dict[str, float] = {"episode": 0.0}
    evaluate(first)
    metrics: list[dict[str, float]] = [first]
    best_score, best_test, best_episode, final = -float("inf"), float("nan"), -1, float("nan")
    max_test = -float("inf")
    for episode in range(config.episodes):
        row: dict[str, float] = {"episode": float(episode + 1)}
        row.update(trainer.train_episode(domain.train_seeds(episode, config.envs, config.seed)))
        last = episode + 1 == config.episodes
        if (episode + 1) % config.eval.every == 0 or last:
            t0 = time.perf_counter()
            score, final = evaluate(row)
            row["eval_seconds"] = time.perf_counter() - t0
            max_test = max(max_test, final)
            if score > best_score:
                best_score, best_test, best_episode = score, final, episode + 1
                torch.save(trainer.state_dict(), out / "best.pt")
        metrics.append(row)
        _write_metrics(out, metrics)
        if on_episode is not None:
            on_episode(episode, row)
    torch.save(trainer.state_dict(), out / "final.pt")
    # the final policy in the other action mode (sampled if evaluation is greedy, and vice
    # versa): a greedy policy can herd agents onto one option, a sampled one spreads them
    other_mode = not greedy
    other = run_policy(test_env, test_seeds, lambda s: trainer.act(s, other_mode)).mean
    seconds = time.perf_counter() - start
    summary = {
        "domain": config.domain,
        "algo": config.algo,
        "agents": domain.num_agents,
        "episodes": config.episodes,
        "seed": config.seed,
        "initial_test_reward": first["test_reward"],
        "selection": "validation" if val_env is not None else "test",
        "best_validation_reward": best_score if val_env is not None else None,
        "best_test_reward": best_test,
        "best_episode": best_episode,
        "best_test_reward_on_test": max_test,
        "final_test_reward": final,
        "evaluation_mode": "greedy" if greedy else "sampled",
        "actor": type(trainer.actor.net).__name__,
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
        f"{preset_label(config.algo)} on {config.domain}, N = {domain.num_agents}, seed {config.seed}",
    )
    return RunResult(out, metrics, baselines, best_test, best_episode, final, other, seconds, max_test)
