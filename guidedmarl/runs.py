"""Finished (or stopped) runs from Python: :func:`load_run` reads a run folder, :func:`evaluate` scores a checkpoint.

>>> run = load_run("runs/cloud-dgpg-s0")            # doctest: +SKIP
>>> run.status, run.summary["best_test_reward"]      # doctest: +SKIP
>>> evaluate(run, "best", scenarios=100, seed=7)     # 100 fresh scenarios  # doctest: +SKIP

``guidedmarl evaluate RUN_DIR`` is :func:`evaluate` plus a table; both write the result as
JSON (``eval-CHECKPOINT-SCENARIOS.json`` in the run folder unless another path is given).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from guidedmarl.atomic import atomic_write_json
from guidedmarl.config import RunConfig, build_config
from guidedmarl.errors import ConfigError
from guidedmarl.loggers import read_metrics
from guidedmarl.rundir import CONFIG, read_summary, run_status

CHECKPOINTS = ("best", "final", "last")
"""Checkpoint names of a run folder: ``best.pt``, ``final.pt``, and ``last`` (``checkpoint.pt``, the latest episode)."""


@dataclass
class Run:
    """A run folder as read by :func:`load_run`."""

    path: Path
    config: RunConfig
    status: str | None
    summary: dict[str, Any]
    metrics: list[dict[str, float]]

    def checkpoint(self, which: str | Path = "best") -> Path:
        """The file of checkpoint ``which``: ``best``, ``final``, ``last`` or a path; :class:`ConfigError` if absent."""
        name = str(which)
        path = self.path / ("checkpoint.pt" if name == "last" else f"{name}.pt") if name in CHECKPOINTS else Path(name)
        if not path.is_file():
            hint = " (the run has not finished: use best or last)" if name == "final" and self.status != "finished" else ""
            raise ConfigError(f"checkpoint: {path} does not exist{hint}; choose best, final, last or a file path")
        return path


def load_run(path: str | Path) -> Run:
    """Read the run folder ``path``: its resolved config, status, summary and metrics so far."""
    path = Path(path)
    file = path / CONFIG
    if not file.is_file():
        raise ConfigError(f"run: {path} is not a run folder (it has no {CONFIG})")
    data = yaml.safe_load(file.read_text()) or {}
    config = build_config({**data, "out": str(path)}, f"settings from {file}")
    metrics_file = path / "metrics.json"
    metrics = read_metrics(metrics_file) if metrics_file.is_file() else []
    return Run(path, config, run_status(path), read_summary(path) or {}, metrics)


def scenario_seeds(domain: Any, config: RunConfig, scenarios: int | None, seed: int | None) -> tuple[str, list[int]]:
    """(label, seeds): the run's test scenarios (the first ``scenarios``), or ``scenarios`` fresh ones drawn with ``seed``."""
    count = scenarios or config.eval.test_scenarios
    if count < 1 or count > 10_000:
        raise ConfigError(f"scenarios: must lie in [1, 10000], got {count}")
    if seed is None:
        if count > config.eval.test_scenarios:
            raise ConfigError(f"scenarios: the run has {config.eval.test_scenarios} test scenarios, got {count}; "
                              "pass --seed S to draw that many fresh ones")  # fmt: skip
        return f"test{count}", domain.test_seeds(count)
    if seed < 0:
        raise ConfigError(f"seed: must be >= 0, got {seed}")
    return f"fresh{count}-s{seed}", domain.fresh_seeds(count, seed)


def evaluate(
    run: Run | str | Path,
    checkpoint: str | Path = "best",
    scenarios: int | None = None,
    seed: int | None = None,
    heuristics: bool = True,
    out: Path | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Score a checkpoint of ``run`` on its test scenarios, or on ``scenarios`` fresh ones drawn with ``seed``.

    The policy acts as at the run's evaluation (``eval.deterministic``, or the domain's
    ``greedy_evaluation`` where it is not set); with ``heuristics`` the domain's heuristics are scored on the same scenarios. The
    result (also written as JSON to ``out``, default ``RUN/eval-CHECKPOINT-SCENARIOS.json``)
    holds the checkpoint, the scenario seeds, the mean, std and per-scenario returns.
    ``device`` scores it on another device than the run's (e.g. a GPU run on a laptop).
    """
    from guidedmarl import checkpoint as ckpt
    from guidedmarl.evaluation import evaluate_heuristic, run_policy
    from guidedmarl.experiment import build

    run = run if isinstance(run, Run) else load_run(run)
    path = run.checkpoint(checkpoint)
    state = ckpt.trainer_state(ckpt.read_torch_file(path), path)
    config = run.config if device is None else run.config.model_copy(update={"device": device})
    domain, trainer = build(config)
    ckpt.load_into(trainer, state, path)
    label, seeds = scenario_seeds(domain, run.config, scenarios, seed)
    env = domain.make_env(len(seeds))
    mode = domain.greedy_evaluation if run.config.eval.deterministic is None else run.config.eval.deterministic
    policy = run_policy(env, seeds, lambda s: trainer.act(s, mode), sample_seed=run.config.seed)
    result: dict[str, Any] = {
        "run": str(run.path),
        "checkpoint": str(path),
        "checkpoint_episode": int(state["episode"]),
        "scenarios": {"kind": "test" if seed is None else "fresh", "count": len(seeds), "seed": seed, "seeds": seeds},
        "evaluation_mode": "greedy" if mode else "sampled",
        "device": str(domain.device),
        "policy": policy.as_dict(),
        "heuristics": {},
    }
    if heuristics:
        for name, factory in domain.heuristics().items():
            result["heuristics"][name] = evaluate_heuristic(factory, env, seeds, seed=run.config.seed).as_dict()
    name = Path(checkpoint).stem if str(checkpoint) not in CHECKPOINTS else str(checkpoint)
    target = Path(out) if out is not None else run.path / f"eval-{name}-{label}.json"
    atomic_write_json(target, result)
    result["written_to"] = str(target)
    return result
