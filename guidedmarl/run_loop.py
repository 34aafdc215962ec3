"""The training loop of one session of a run (fresh or resumed), and the state it checkpoints.

:class:`RunLoop` is what :func:`guidedmarl.experiment.run_experiment` drives: row 0 (the
untrained policy and the heuristics) for a fresh run, then one row per training episode
(train, evaluate every ``eval.every`` episodes, keep the best weights), each followed by a
resume checkpoint holding the :class:`Progress`; :meth:`RunLoop.finish` writes the final
weights, the summary and the learning curve.

With ``eval.test = "chosen"`` an evaluation during training plays the validation scenarios
only; the test scenarios are played for the untrained policy (row 0) and, in
:meth:`RunLoop.finish`, for the checkpoint chosen on validation and the final policy. The
summary's figures are those of ``"every"`` (the same weights scored on the same scenarios with
the same sampling seed; ``tests/test_eval_schedule.py``), at a third of the evaluation cost
with the default 20 validation and 40 test scenarios; only the per-episode test curve and the
test-selected maximum (``best_test_reward_on_test``) are not there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from guidedmarl import checkpoint as ckpt
from guidedmarl.atomic import atomic_torch_save, atomic_write_json
from guidedmarl.config import RunConfig
from guidedmarl.domain import Domain
from guidedmarl.errors import GuidedMarlError
from guidedmarl.evaluation import EvalResult, evaluate_heuristic, run_policy
from guidedmarl.heuristic_cache import cached_heuristics, code_fingerprint
from guidedmarl.learners import preset_label
from guidedmarl.loggers import Logger
from guidedmarl.memory import peak_resident_mib
from guidedmarl.plotting import plot_learning_curve
from guidedmarl.rundir import CHECKPOINT, write_status
from guidedmarl.training import rng
from guidedmarl.training.trainer import Trainer


@contextmanager
def _in_episode(episode: int, doing: str) -> Iterator[None]:
    """Prefix a library error raised inside with the episode it arose in (same error type).

    A NaN or a failed solve then says where it appeared *and* when; the run folder keeps the
    checkpoint of the last complete episode, so the run can be resumed from there.
    """
    try:
        yield
    except GuidedMarlError as exc:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (f"{doing} episode {episode}: {exc.args[0]}", *exc.args[1:])
        raise


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


@dataclass
class Progress:
    """The run loop's state after a complete episode: saved in every resume checkpoint."""

    episode: int = 0  # training episodes done
    metrics: list[dict[str, float]] = field(default_factory=list)
    best_score: float = -math.inf
    best_test: float = math.nan
    best_episode: int = -1
    max_test: float = -math.inf
    final: float = math.nan
    global_step: int = 0  # environment steps so far
    agent_steps: int = 0
    seconds: float = 0.0  # wall-clock seconds of the training loop, over every session
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)


class RunLoop:
    """The training loop of one session (a fresh run or a resumed one) over a :class:`Progress`."""

    def __init__(self, config: RunConfig, domain: Domain, trainer: Trainer, out: Path, state: Progress,
                 loggers: list[Logger], resolved: dict[str, Any]) -> None:  # fmt: skip
        self.config, self.domain, self.trainer, self.out, self.state = config, domain, trainer, out, state
        self.loggers, self.resolved = loggers, resolved
        ev = config.eval
        self.test_env, self.test_seeds = domain.make_env(ev.test_scenarios), domain.test_seeds(ev.test_scenarios)
        self.val_env = domain.make_env(ev.validation_scenarios) if ev.validation_scenarios else None
        self.val_seeds = domain.validation_seeds(ev.validation_scenarios)
        self.greedy = domain.greedy_evaluation if ev.deterministic is None else ev.deterministic
        spec = trainer.env.spec
        self.env_steps = spec.horizon * config.envs
        self.heuristics_from_cache = False
        self.agent_steps = self.env_steps * spec.num_agents

    def act(self, step: Any) -> Any:
        return self.trainer.act(step, self.greedy)

    def evaluate(self, row: dict[str, float], test: bool = True) -> tuple[float, float]:
        """(selection score, test reward) of the current policy; fills ``row``.

        ``test=False`` plays the validation scenarios only (``eval.test = "chosen"``; the test
        reward is then NaN).
        """
        test_reward = self.test_reward(row) if test or self.val_env is None else math.nan
        if self.val_env is None:
            return test_reward, test_reward
        val = run_policy(self.val_env, self.val_seeds, self.act, sample_seed=self.config.seed)
        row["eval/validation_reward"] = val.mean
        return val.mean, test_reward

    def test_reward(self, row: dict[str, float] | None = None) -> float:
        """Mean test reward of the current policy (its statistics into ``row`` if given)."""
        test = run_policy(self.test_env, self.test_seeds, self.act, sample_seed=self.config.seed)
        if row is not None:
            row["eval/test_reward"], row["eval/test_reward_std"] = test.mean, test.std
            row |= {f"eval/test_{k}": v for k, v in test.info.items()}
        return test.mean

    @property
    def tests_every_evaluation(self) -> bool:
        return self.config.eval.test == "every" or self.val_env is None

    def heuristics(self) -> dict[str, dict[str, Any]]:
        """Every heuristic's result on the test scenarios, read from the disk cache where it has
        them (:mod:`guidedmarl.heuristic_cache`; ``eval.heuristics_cache``)."""
        cfg, domain = self.config, self.domain
        factories = domain.heuristics()

        def compute() -> dict[str, dict[str, Any]]:
            return {name: evaluate_heuristic(f, self.test_env, self.test_seeds, seed=cfg.seed).as_dict()
                    for name, f in factories.items()}  # fmt: skip

        if not cfg.eval.heuristics_cache:
            return compute()
        description = {
            "domain": f"{type(domain).__module__}.{type(domain).__qualname__}", "agents": domain.num_agents,
            "settings": domain.settings.model_dump(mode="json"), "device": str(domain.device),
            "test_seeds": self.test_seeds, "seed": cfg.seed, "code": code_fingerprint(domain),
        }  # fmt: skip
        results, self.heuristics_from_cache = cached_heuristics(description, list(factories), compute)
        return results

    def checkpoint(self) -> None:
        gens = rng.generators_of(self.trainer)
        ckpt.save_resume(self.out / CHECKPOINT, self.trainer.state_dict(), rng.capture(gens), asdict(self.state),
                         self.resolved)  # fmt: skip

    def record(self, row: dict[str, float]) -> None:
        """Log a finished row, then checkpoint: the checkpoint is the truth a resume starts from."""
        self.state.metrics.append(row)
        for logger in self.loggers:
            logger.log(row)
        self.checkpoint()
        write_status(self.out, "running", episodes_done=self.state.episode, episodes=self.config.episodes)

    def begin(self) -> None:
        """A fresh run: the heuristics' rewards and row 0 (the untrained policy)."""
        if self.config.eval.heuristics:
            self.state.baselines = self.heuristics()
            atomic_write_json(self.out / "baselines.json", self.state.baselines)
        first: dict[str, float] = {"episode": 0.0, "global_step": 0.0, "agent_steps": 0.0}
        self.evaluate(first)
        self.record(first)

    def train(self, on_episode: Callable[[int, dict[str, float]], None] | None) -> None:
        cfg, st = self.config, self.state
        for episode in range(st.episode, cfg.episodes):
            t0 = time.perf_counter()
            st.global_step += self.env_steps
            st.agent_steps += self.agent_steps
            row: dict[str, float] = {"episode": float(episode + 1), "global_step": float(st.global_step),
                                     "agent_steps": float(st.agent_steps)}  # fmt: skip
            with _in_episode(episode + 1, "training"):
                row.update(self.trainer.train_episode(self.domain.train_seeds(episode, cfg.envs, cfg.seed)))
            if (episode + 1) % cfg.eval.every == 0 or episode + 1 == cfg.episodes:
                t1 = time.perf_counter()
                with _in_episode(episode + 1, "evaluating after"):
                    score, st.final = self.evaluate(row, test=self.tests_every_evaluation)
                row["time/eval_seconds"] = time.perf_counter() - t1
                if not math.isnan(st.final):
                    st.max_test = max(st.max_test, st.final)
                if score > st.best_score:
                    st.best_score, st.best_test, st.best_episode = score, st.final, episode + 1
                    atomic_torch_save(self.out / "best.pt", self.trainer.state_dict())
            st.seconds += time.perf_counter() - t0
            row["time/SPS"] = st.global_step / max(st.seconds, 1e-9)
            row["time/agent_steps_per_second"] = st.agent_steps / max(st.seconds, 1e-9)
            st.episode = episode + 1
            self.record(row)
            if on_episode is not None:
                on_episode(episode, row)

    def test_chosen_and_final(self) -> None:
        """``eval.test = "chosen"``: the test rewards of the final policy and of ``best.pt``.

        The chosen weights are read back from ``best.pt`` (a resumed run has them only there)
        into the actor, scored, and the final weights put back.
        """
        st = self.state
        if math.isnan(st.final):
            st.final = self.test_reward()
        if st.best_episode < 0:  # never evaluated after training
            return
        if st.best_episode == st.episode:
            st.best_test = st.final
            return
        actor = self.trainer.actor
        final = {k: v.clone() for k, v in actor.state_dict().items()}
        best = ckpt.trainer_state(ckpt.read_torch_file(self.out / "best.pt"), self.out / "best.pt")
        actor.load_state_dict(best["actor"])  # type: ignore[arg-type]
        try:
            st.best_test = self.test_reward()
        finally:
            actor.load_state_dict(final)

    def finish(self, seconds: float) -> RunResult:
        """Final weights, the final policy in the other action mode, summary and figure."""
        cfg, st, out = self.config, self.state, self.out
        atomic_torch_save(out / "final.pt", self.trainer.state_dict())
        if not self.tests_every_evaluation:
            self.test_chosen_and_final()
        # the final policy in the other action mode (sampled if evaluation is greedy, and vice
        # versa): a greedy policy can herd agents onto one option, a sampled one spreads them
        other_mode = not self.greedy
        other = run_policy(
            self.test_env, self.test_seeds, lambda s: self.trainer.act(s, other_mode), sample_seed=cfg.seed
        ).mean
        baselines = {k: EvalResult(v["returns"], v.get("info", {})) for k, v in st.baselines.items()}
        summary = {
            "domain": cfg.domain, "algo": cfg.algo, "agents": self.domain.num_agents, "episodes": cfg.episodes,
            "episodes_done": st.episode, "seed": cfg.seed, "threads": self.resolved["threads"],
            "global_step": st.global_step,
            "initial_test_reward": st.metrics[0]["eval/test_reward"],
            "selection": "validation" if self.val_env is not None else "test",
            "best_validation_reward": st.best_score if self.val_env is not None else None,
            "best_test_reward": st.best_test, "best_episode": st.best_episode,
            "best_test_reward_on_test": st.max_test if self.tests_every_evaluation else None,
            "final_test_reward": st.final, "test_scenarios_played": cfg.eval.test,
            "evaluation_mode": "greedy" if self.greedy else "sampled",
            "actor": type(self.trainer.actor.net).__name__,
            "final_test_reward_other_mode": other,
            "baselines": {k: v.mean for k, v in baselines.items()}, "baselines_from_cache": self.heuristics_from_cache,
            "seconds": seconds, "train_seconds": st.seconds, "peak_rss_mib": peak_resident_mib(),
        }  # fmt: skip
        shown = self.domain.plot_baselines or tuple(baselines)
        points = None
        if not self.tests_every_evaluation and st.best_episode >= 0:
            points = {"test reward, chosen checkpoint": (float(st.best_episode), st.best_test),
                      "test reward, final policy": (float(st.episode), st.final)}  # fmt: skip
        plot_learning_curve(
            st.metrics,
            {k: baselines[k].mean for k in shown if k in baselines},
            out / "learning_curve.png",
            f"{preset_label(cfg.algo)} on {cfg.domain}, N = {self.domain.num_agents}, seed {cfg.seed}",
            test_points=points,
        )
        write_status(out, "finished", **summary)  # last: "finished" means every file is there
        return RunResult(out, st.metrics, baselines, st.best_test, st.best_episode, st.final, other, seconds,
                         st.max_test if self.tests_every_evaluation else math.nan)  # fmt: skip
