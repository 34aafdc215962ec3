"""One experiment: build the domain and trainer, train, evaluate, write the run directory.

:func:`build` turns a :class:`RunConfig` into a domain and a trainer; :func:`run_experiment`
trains it, or continues it (``resume=True``) from the folder's ``checkpoint.pt``. After
every ``eval.every`` training episodes the greedy policy is evaluated on the *validation*
scenarios (the best checkpoint is chosen there) and on the *test* scenarios (reported);
the two sets are seeded apart from each other and from training
(:meth:`Domain.validation_seeds`, :meth:`Domain.test_seeds`). With
``eval.validation_scenarios = 0`` the best checkpoint is chosen on the test scenarios, as
the paper's "best checkpoint reward" does (an optimistic figure: it selects on the data it
reports).

The run directory holds (every file written atomically, :mod:`guidedmarl.atomic`):

* ``config.yaml``: the resolved configuration, domain settings and thread count included
  (re-runnable with ``guidedmarl run --config DIR/config.yaml --out OTHER``);
* ``metrics.csv`` and ``metrics.json``: one row per training episode, after a row for
  episode 0 that holds the rewards of the untrained policy (names: :mod:`guidedmarl.loggers`);
* ``baselines.json``: each heuristic's reward on the same held-out scenarios;
* ``summary.json``: ``status`` (:mod:`guidedmarl.rundir`) and, once finished, the test reward
  of the checkpoint chosen on validation (``best_test_reward``, episode ``best_episode``)
  and of the final policy, the test-selected maximum for comparison with the paper
  (``best_test_reward_on_test``), the final policy in the other action mode, wall-clock time;
* ``checkpoint.pt`` (resume, after every complete episode), ``best.pt``, ``final.pt``
  (weights), ``provenance.json``, ``learning_curve.png``.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pydantic import ValidationError

from guidedmarl import checkpoint as ckpt
from guidedmarl.atomic import atomic_write_text
from guidedmarl.config import RunConfig
from guidedmarl.device import resolve_device
from guidedmarl.domain import Domain, get_domain
from guidedmarl.errors import CheckpointError, GuidedMarlError
from guidedmarl.evaluation import EvalResult
from guidedmarl.run_loop import Progress, RunLoop, RunResult
from guidedmarl.loggers import make_loggers
from guidedmarl.memory import MemoryEstimate, available_bytes, check_memory, estimate_run_memory
from guidedmarl.rundir import CHECKPOINT, CONFIG, prepare_out, provenance, record_session, run_status, write_status
from guidedmarl.training import rng
from guidedmarl.runtime import keep_freed_memory
from guidedmarl.training.networks import OptionScorer
from guidedmarl.training.trainer import Trainer

NOT_COMPARED_ON_RESUME = ("out", "log")
"""Settings a resumed run may change: they do not change its numbers."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch from the single run seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def training_episodes(config: RunConfig, horizon: int) -> int:
    """``config.episodes``, or the episodes that spend ``config.env_steps`` (rounded up) when it is set."""
    if config.env_steps is None:
        return config.episodes
    return max(1, -(-config.env_steps // (config.envs * horizon)))


def check_device(config: RunConfig) -> None:
    """A :class:`ConfigError` unless this machine and the run's domain can use ``config.device``
    (called before the run folder is touched)."""
    resolve_device(config.device, get_domain(config.domain).devices, f"domain '{config.domain}'")


def build(config: RunConfig) -> tuple[Domain, Trainer]:
    """Domain and trainer for a configuration (seeds the global generators first)."""
    seed_everything(config.seed)
    keep_freed_memory()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    domain = get_domain(config.domain).from_config(config.agents, config.domain_config, config.device)
    env = domain.make_env(config.envs)
    trainer = Trainer(
        env,
        config.ppo,
        config.learner,
        domain.make_model(),
        seed=config.seed,
        total_episodes=training_episodes(config, env.spec.horizon),
        device=domain.device,
    )
    return domain, trainer


def run_memory_estimate(config: RunConfig, domain: Domain, trainer: Trainer) -> MemoryEstimate:
    """What ``config`` needs in memory (:mod:`guidedmarl.memory`), from the built domain and trainer."""
    spec, ev = trainer.env.spec, config.eval
    return estimate_run_memory(
        num_agents=spec.num_agents, obs_dim=spec.obs_dim, state_dim=spec.state_dim, horizon=spec.horizon,
        num_actions=max(spec.num_actions, 1), train_envs=config.envs, hidden=list(config.ppo.hidden),
        num_minibatches=config.ppo.num_minibatches, option_scorer=isinstance(trainer.actor.net, OptionScorer),
        environment_bytes=domain.memory_bytes(config.envs + ev.test_scenarios + ev.validation_scenarios),
        chunk_samples=config.ppo.chunk_samples,
    )  # fmt: skip


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


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's resolved config with the defaults of settings added since it was written.

    A run folder written before a new setting existed then resumes (the new setting's default
    changes nothing that run did); a config that no longer validates is compared as it is, so
    the mismatch is reported.
    """
    try:
        config = RunConfig.model_validate(saved)
        settings = get_domain(config.domain).settings_model.model_validate(config.domain_config)
    except (ValidationError, GuidedMarlError):
        return saved
    filled = config.model_dump(mode="json")
    filled["domain_config"] = settings.model_dump(mode="json")
    return filled


def _restore(out: Path, trainer: Trainer, resolved: dict[str, Any]) -> Progress | None:
    """The progress of ``out/checkpoint.pt`` loaded into ``trainer`` (None: no checkpoint, start afresh)."""
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    data = ckpt.load_resume(path)
    saved = {k: v for k, v in _with_defaults(data["config"]).items() if k not in NOT_COMPARED_ON_RESUME}
    now = {k: v for k, v in resolved.items() if k not in NOT_COMPARED_ON_RESUME}
    if saved != now:
        keys = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise CheckpointError(f"{path} belongs to another configuration (differs in {', '.join(keys)}); "
                              "resume with the folder's own config.yaml")  # fmt: skip
    ckpt.load_into(trainer, data["trainer"], path)
    try:
        rng.restore(data["rng"], rng.generators_of(trainer))
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None
    return Progress(**data["loop"])


def finished_result(out: Path) -> RunResult:
    """The :class:`RunResult` of a finished run, read back from its folder."""
    import json

    summary = json.loads((out / "summary.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    path = out / "baselines.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    baselines = {k: EvalResult(v["returns"], v.get("info", {})) for k, v in stored.items()}
    return RunResult(out, metrics, baselines, summary["best_test_reward"], summary["best_episode"],
                     summary["final_test_reward"], summary["final_test_reward_other_mode"], summary["seconds"],
                     _number(summary.get("best_test_reward_on_test")))  # fmt: skip


def _number(value: Any) -> float:
    """A summary figure as a float (None, written where a figure was not measured: NaN)."""
    return math.nan if value is None else float(value)


def run_experiment(
    config: RunConfig,
    on_episode: Callable[[int, dict[str, float]], None] | None = None,
    *,
    resume: bool = False,
    force: bool = False,
) -> RunResult:
    """Train the learner ``config.algo`` on ``config.domain`` and write the run directory.

    Args:
        config: a validated :class:`RunConfig`.
        on_episode: called after every training episode with (episode, metrics), e.g. to
            drive a progress bar.
        resume: continue the run in ``config.out`` from its last complete episode (from the
            start if it has no checkpoint; a finished run is returned as it is). The result
            equals that of an uninterrupted run with the same seed and thread count.
        force: overwrite a run already in ``config.out``; with ``resume``, continue the run
            when the folder holds this configuration's checkpoint, else start over.

    Raises:
        ConfigError: ``config.out`` holds a run and neither ``resume`` nor ``force`` is given.
        KeyboardInterrupt: Ctrl-C (or SIGTERM through the command line); the folder is left
            ``interrupted`` and resumable.
    """
    out = Path(config.out)
    check_device(config)
    prepare_out(out, resume, force)
    if resume and run_status(out) == "finished":
        return finished_result(out)
    start = time.perf_counter()
    domain, trainer = build(config)
    if config.env_steps is not None:  # the budget in environment steps, as episodes from here on
        config = config.model_copy(update={"episodes": trainer.total_episodes})
    if config.memory_check:  # before any file is written or any scenario generated
        check_memory(run_memory_estimate(config, domain, trainer), available_bytes())
    resolved = resolved_config(config, domain)
    try:
        state = _restore(out, trainer, resolved) if resume else None
    except CheckpointError:
        if not force:
            raise
        state = None
    atomic_write_text(out / CONFIG, yaml.safe_dump(resolved, sort_keys=False))
    session = provenance(resolved["threads"], str(domain.device), " ".join(sys.argv))
    record_session(out, session | {"resumed_from_episode": state.episode if state else None})
    fresh = state is None
    state = state or Progress()
    loggers = make_loggers(config.log, out, resolved)
    write_status(out, "running", episodes_done=state.episode, episodes=config.episodes)
    try:
        for logger in loggers:
            logger.start(state.metrics)
        loop = RunLoop(config, domain, trainer, out, state, loggers, resolved)
        if fresh:
            loop.begin()
        loop.train(on_episode)
        return loop.finish(time.perf_counter() - start)
    except KeyboardInterrupt:
        write_status(out, "interrupted", episodes_done=state.episode, episodes=config.episodes)
        raise
    except BaseException as exc:
        write_status(out, "failed", episodes_done=state.episode, episodes=config.episodes,
                     error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        raise
    finally:
        for logger in loggers:
            logger.close()
