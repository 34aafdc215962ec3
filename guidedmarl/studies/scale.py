"""Learner-against-N studies: DG-PG against MAPPO and IPPO (``scale``), and DG-PG's alpha (``alpha``).

The headline claim of the method (``docs/method.md``; method note): DG-PG converges in a
few episodes at every N, MAPPO and IPPO do not, even with 2.5 times the budget. The scale
study runs that comparison on a grid; the alpha study varies DG-PG's mixing weight at one N.

A study is a grid of **cells** (arm, N, seed). An *arm* is one learner setting: an
algorithm, a number of training episodes and (for DG-PG) an alpha schedule. Every cell is
one ordinary run of :func:`guidedmarl.experiment.run_experiment` with its own run directory
``OUT/runs/<arm>/N<n>-s<seed>/``, so every cell can be inspected (or re-run) on its own
with ``guidedmarl run --config OUT/runs/.../config.yaml``.

Scale study (``guidedmarl study scale``)
-----------------------------------------

* arms ``dgpg``, ``mappo``, ``ippo`` (``algos``); DG-PG trains ``episodes`` (default 10)
  episodes, MAPPO and IPPO ``round(episodes * baseline_budget)`` (default 2.5: 25);
* fairness: the arms differ *only* in ``algo`` and the number of episodes. Networks, PPO
  settings, training scenarios (``Domain.train_seeds(episode, envs, seed)``), test
  scenarios and seeds are the same (one :class:`~guidedmarl.config.RunConfig` built from the
  same settings, ``--config`` / ``--set`` applied to every arm alike);
* N grid default 5, 10, 20, 50, 100, 200, 500, 1000, 1500; seeds default 0, 1, 2.

Alpha study (``guidedmarl study alpha``)
-----------------------------------------

DG-PG only: the default schedule (``guidance.alpha`` of the settings, linear 0.9 -> 0.2 by
default) and constant alpha in ``alphas`` (default 0, 0.2, 0.4, 0.6, 0.8). alpha = 0 is the
ablation "DG-PG with the descent term removed": the same trainer (``algo = dgpg``) with
``guidance.alpha = {kind: constant, value: 0}`` (its advantage equals MAPPO's bit for bit,
``tests/test_trainer.py``). Default N = 50, seeds 0, 1, 2, 10 episodes.

Heuristics
----------

The domain's heuristics are evaluated once per N on the same held-out test scenarios as
the learners (``Domain.test_seeds(eval.test_scenarios)``, seed of the Random rule = the first
study seed), cached in ``OUT/heuristics/N<n>.json`` and reused for every cell of that N
(the cells run with ``eval.heuristics = false``).

Convergence
-----------

:class:`~guidedmarl.convergence.ConvergenceCriterion` (defaults: moving window 3, band 2 %
of the floor-to-target range, quality gate 90 %) on each run's test-reward curve (the
evaluations after training episodes 1, 2, ..., without the untrained episode 0), with
floor = the ``floor`` heuristic (``random``) and target = the ``target`` heuristic
(``best_fit``) at the same N. The run's *episodes to converge* is the training episode of
the evaluation at which the criterion says it converged; a run whose curve fails the
quality gate has not converged. Reported per (N, arm): "k/S converged" and the mean over
the converged seeds. A domain without these heuristics gets no convergence column ("n/a").

Resuming
--------

A cell whose ``summary.json`` exists is not run again: its metrics are read back from
``summary.json`` and ``metrics.json``. Before reusing it, its ``config.yaml`` is compared
with the configuration the study would run (everything except ``out`` and ``threads``); a
difference is an error (use another ``--out``, or delete the cell). A cell without
``summary.json`` (interrupted) is run again from scratch. The outputs are rewritten after
every N, so an interrupted study leaves tables for the N it finished.

Outputs in ``OUT``
------------------

``<study>.md`` and ``<study>.csv`` (the table: per N and arm, episodes to converge, best and
final test reward mean +- sample std over seeds, best episode, wall-clock per run; the
heuristics' test rewards per N), ``runs.csv`` (one row per cell), ``<study>.json``
(everything, curves included), ``curves_N<n>.png`` (test reward against episode, mean over
seeds with a min-max band, floor and target heuristics as horizontal lines),
``episodes_to_converge.png``, ``marl_eval.json`` (:mod:`guidedmarl.studies.marl_eval`), and
``command.txt`` (command line and machine).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

import guidedmarl.experiment as _run_module
from guidedmarl.config import ConfigError, RunConfig, build_config, deep_merge
from guidedmarl.convergence import ConvergenceCriterion
from guidedmarl.domain import get_domain
from guidedmarl.evaluation import evaluate_heuristic
from guidedmarl.studies.common import command_block, finite_or_null, machine_info, write_command_file
from guidedmarl.studies.marl_eval import MarlEvalFormatError, RunCurve, build_marl_eval

DEFAULT_AGENTS: tuple[int, ...] = (5, 10, 20, 50, 100, 200, 500, 1000, 1500)
DEFAULT_ALGOS: tuple[str, ...] = ("dgpg", "mappo", "ippo")
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
DEFAULT_ALPHAS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8)
ALGO_LABELS = {"dgpg": "DG-PG", "mappo": "MAPPO", "ippo": "IPPO"}
STUDY_CONTROLLED = ("algo", "agents", "episodes", "seed", "out", "threads")
"""Run settings each cell sets itself; the same keys of ``run_config`` are ignored."""


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Arm:
    """One learner setting of a study (a row group of the table, a line of the curves).

    Attributes:
        name: key: run-directory folder, marl-eval algorithm name (no commas or slashes).
        label: shown in tables and plots.
        algo: ``dgpg`` | ``mappo`` | ``ippo``.
        episodes: training episodes of each run.
        alpha: replaces ``guidance.alpha`` of the settings (None: keep it).
    """

    name: str
    label: str
    algo: str
    episodes: int
    alpha: dict[str, Any] | None = None


@dataclass
class GridStudySettings:
    """Settings shared by the scale and alpha studies (see the module docstring).

    Attributes:
        domain: registered domain (None: ``run_config["domain"]``, else ``cloud``).
        agents: the N grid.
        seeds: run seeds (every arm runs every seed).
        episodes: DG-PG's training episodes.
        run_config: ``RunConfig``-shaped settings applied to every cell (``ppo``, ``guidance``,
            ``eval``, ``envs``, ``domain_config``), e.g. from ``--config`` and ``--set``; the
            keys in ``STUDY_CONTROLLED`` are set by the study.
        threads: torch intra-op threads of every run and of the heuristics (None: torch's).
        floor: heuristic used as the convergence floor.
        target: heuristic used as the convergence target.
        criterion: the convergence definition.
        out: output directory (None: ``runs/<study>-<domain>``).
        command: the command line, written to ``command.txt``.
    """

    domain: str | None = None
    agents: list[int] = field(default_factory=lambda: list(DEFAULT_AGENTS))
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    episodes: int = 10
    run_config: dict[str, Any] = field(default_factory=dict)
    threads: int | None = 1
    floor: str = "random"
    target: str = "best_fit"
    criterion: ConvergenceCriterion = field(default_factory=ConvergenceCriterion)
    out: Path | None = None
    command: str | None = None

    study: str = field(default="grid", init=False)
    title: str = field(default="learners against N", init=False)

    def arms(self) -> list[Arm]:  # pragma: no cover - overridden
        raise NotImplementedError

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first unusable value."""
        if not self.agents:
            raise ConfigError("agents: give at least one N")
        if any(int(n) < 1 for n in self.agents):
            raise ConfigError(f"agents: every N must be >= 1, got {list(self.agents)}")
        if not self.seeds:
            raise ConfigError("seeds: give at least one seed")
        if any(int(s) < 0 for s in self.seeds):
            raise ConfigError(f"seeds: must be >= 0, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: each seed once, got {list(self.seeds)}")
        if self.episodes < 1:
            raise ConfigError(f"episodes: must be >= 1, got {self.episodes}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads: must be >= 1, got {self.threads}")
        if not isinstance(self.run_config, dict):
            raise ConfigError("run_config: must be a mapping of run settings")
        arms = self.arms()
        if not arms:
            raise ConfigError("the study has no arms (learner settings) to run")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ConfigError(f"arm names must be distinct, got {names}")

    @property
    def domain_name(self) -> str:
        return self.domain or str(self.run_config.get("domain") or "cloud")

    def resolved_out(self) -> Path:
        return Path(self.out) if self.out is not None else Path(f"runs/{self.study}-{self.domain_name}")


@dataclass
class ScaleStudySettings(GridStudySettings):
    """DG-PG against MAPPO and IPPO over N (``guidedmarl study scale``).

    Attributes (besides :class:`GridStudySettings`):
        algos: learners to run (subset of dgpg, mappo, ippo).
        baseline_budget: MAPPO and IPPO train ``round(episodes * baseline_budget)`` episodes.
    """

    algos: list[str] = field(default_factory=lambda: list(DEFAULT_ALGOS))
    baseline_budget: float = 2.5

    def __post_init__(self) -> None:
        self.study = "scale"
        self.title = "DG-PG against MAPPO and IPPO over N"

    def baseline_episodes(self) -> int:
        return max(1, round(self.episodes * self.baseline_budget))

    def arms(self) -> list[Arm]:
        arms = []
        for algo in dict.fromkeys(self.algos):
            episodes = self.episodes if algo == "dgpg" else self.baseline_episodes()
            arms.append(Arm(algo, ALGO_LABELS.get(algo, algo), algo, episodes))
        return arms

    def check(self) -> None:
        bad = [a for a in self.algos if a not in ALGO_LABELS]
        if bad or not self.algos:
            raise ConfigError(f"algos: choose from {', '.join(ALGO_LABELS)}, got {list(self.algos)}")
        if not 0 < self.baseline_budget <= 1000:
            raise ConfigError(f"baseline_budget: must lie in (0, 1000], got {self.baseline_budget}")
        super().check()


@dataclass
class AlphaStudySettings(GridStudySettings):
    """DG-PG with constant alpha values and the default schedule (``guidedmarl study alpha``).

    Attributes (besides :class:`GridStudySettings`):
        alphas: constant alpha values; 0 is the ablation "descent term removed".
        decay: also run the schedule of the settings (``guidance.alpha``, linear 0.9 -> 0.2 by default).
    """

    agents: list[int] = field(default_factory=lambda: [50])
    alphas: list[float] = field(default_factory=lambda: list(DEFAULT_ALPHAS))
    decay: bool = True

    def __post_init__(self) -> None:
        self.study = "alpha"
        self.title = "DG-PG's guidance weight alpha"

    def arms(self) -> list[Arm]:
        arms = []
        if self.decay:
            schedule = self._schedule()
            arms.append(Arm("dgpg-decay", f"DG-PG, {schedule}", "dgpg", self.episodes))
        for a in dict.fromkeys(float(x) for x in self.alphas):
            label = "DG-PG, alpha = 0 (descent term removed)" if a == 0 else f"DG-PG, alpha = {a:g}"
            arms.append(Arm(f"dgpg-alpha{a:g}", label, "dgpg", self.episodes, {"kind": "constant", "value": a}))
        return arms

    def _schedule(self) -> str:
        guidance = self.run_config.get("guidance") or {}
        data = {"domain": self.domain_name}
        cfg = build_config(data | ({"guidance": {"alpha": guidance["alpha"]}} if "alpha" in guidance else {}), "settings")
        alpha = cfg.learner.estimator.alpha  # type: ignore[attr-defined]
        if alpha.kind == "linear":
            return f"alpha decay {alpha.start:g} -> {alpha.end:g}"
        return f"alpha = {alpha.value:g} (configured)"

    def check(self) -> None:
        if not self.alphas and not self.decay:
            raise ConfigError("nothing to run: give --alphas or keep the decay schedule")
        bad = [a for a in self.alphas if not 0.0 <= float(a) <= 1.0]
        if bad:
            raise ConfigError(f"alphas: every value must lie in [0, 1], got {bad}")
        super().check()


# ------------------------------------------------------------------ results
@dataclass
class CellResult:
    """One run of the grid (read back from its run directory when it was skipped)."""

    arm: str
    algo: str
    agents: int
    seed: int
    episodes: int
    out: Path
    curve_episodes: list[int]  # evaluated episodes, 0 (untrained) first
    curve: list[float]  # test reward at those episodes
    best: float
    best_episode: int
    final: float
    final_other_mode: float
    seconds: float
    steps_per_episode: int  # training environment steps per episode (envs x horizon)
    converged_at: int | None = None  # training episode, None: not converged or not defined
    reused: bool = False


@dataclass
class ArmSummary:
    """Aggregate over seeds of one (N, arm)."""

    agents: int
    arm: str
    label: str
    algo: str
    episodes: int
    seeds: int
    converged: int | None  # None: convergence not defined (no floor / target)
    episodes_to_converge: float | None  # mean over converged seeds
    per_seed_converge: list[int | None]
    best_mean: float
    best_std: float
    final_mean: float
    final_std: float
    best_episode_mean: float
    seconds_mean: float
    seconds_std: float


@dataclass
class GridStudyResult:
    out: Path
    cells: list[CellResult]
    summaries: list[ArmSummary]
    heuristics: dict[int, dict[str, float]]  # N -> name -> mean test reward
    seconds: float
    cells_run: int
    cells_reused: int
    convergence_note: str = ""


# ------------------------------------------------------------------ helpers
def _cell_config(settings: GridStudySettings, arm: Arm, n: int, seed: int, out: Path) -> RunConfig:
    data = deep_merge(settings.run_config, {})
    for key in STUDY_CONTROLLED:
        data.pop(key, None)
    data["domain"] = settings.domain_name
    data.update(algo=arm.algo, agents=n, episodes=arm.episodes, seed=seed, threads=settings.threads)
    data["out"] = str(cell_dir(out, arm, n, seed))
    data["eval"] = deep_merge(data.get("eval") or {}, {"heuristics": False})
    if arm.alpha is not None:
        data["guidance"] = dict(data.get("guidance") or {})
        data["guidance"]["alpha"] = dict(arm.alpha)
    return build_config(data, f"settings of cell {arm.name}, N = {n}, seed {seed}")


def cell_dir(out: Path, arm: Arm, n: int, seed: int) -> Path:
    """Run directory of a cell."""
    return out / "runs" / arm.name / f"N{n}-s{seed}"


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in ("out", "threads")}


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                was = "missing" if key not in a else repr(a[key])
                now = "missing" if key not in b else repr(b[key])
                out.append(f"{path}: {was} -> {now}")
            else:
                out += _differences(a[key], b[key], path)
        return out
    return [] if a == b else [f"{prefix}: {a!r} -> {b!r}"]


def _resolved(cfg: RunConfig) -> dict[str, Any]:
    data = cfg.model_dump(mode="json")
    settings = get_domain(cfg.domain).settings_model.model_validate(cfg.domain_config)
    data["domain_config"] = settings.model_dump(mode="json")
    return data


def _read_cell(cfg: RunConfig, arm: Arm, say: Callable[[str], None]) -> CellResult | None:
    """A finished cell's results, or None if it has not finished; error if its settings differ."""
    out = cfg.out
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        return None
    config_path = out / "config.yaml"
    if config_path.is_file():
        done = yaml.safe_load(config_path.read_text()) or {}
        diffs = _differences(_comparable(done), _comparable(_resolved(cfg)))
        if diffs:
            raise ConfigError(
                f"{out} holds a finished run with other settings than this study's "
                f"({'; '.join(diffs[:4])}{' ...' if len(diffs) > 4 else ''}): use another --out, or delete {out}"
            )
        if cfg.threads is not None and done.get("threads") not in (None, cfg.threads):
            say(f"note: {out} was run with {done.get('threads')} torch threads, this study uses {cfg.threads}")
    summary = json.loads(summary_path.read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    return _cell_from(cfg, arm, summary, metrics, reused=True)


def _cell_from(
    cfg: RunConfig, arm: Arm, summary: dict[str, Any], metrics: list[dict[str, float]], reused: bool
) -> CellResult:
    tested = [m for m in metrics if "test_reward" in m]
    return CellResult(
        arm=arm.name,
        algo=cfg.algo,
        agents=cfg.agents,
        seed=cfg.seed,
        episodes=cfg.episodes,
        out=cfg.out,
        curve_episodes=[int(m["episode"]) for m in tested],
        curve=[float(m["test_reward"]) for m in tested],
        best=float(summary["best_test_reward"]),
        best_episode=int(summary["best_episode"]),
        final=float(summary["final_test_reward"]),
        final_other_mode=float(summary.get("final_test_reward_other_mode", float("nan"))),
        seconds=float(summary["seconds"]),
        steps_per_episode=0,
        reused=reused,
    )


def _heuristics(
    settings: GridStudySettings, n: int, out: Path, say: Callable[[str], None]
) -> tuple[dict[str, dict[str, float]], int]:
    """Heuristic test rewards at N (cached in ``out/heuristics/N<n>.json``) and the training horizon."""
    cfg = _cell_config(settings, Arm("heuristics", "heuristics", "dgpg", 1), n, settings.seeds[0], out)
    domain = get_domain(cfg.domain).from_config(n, cfg.domain_config)
    key = {
        "domain": cfg.domain,
        "agents": n,
        "domain_config": domain.settings.model_dump(mode="json"),
        "test_scenarios": cfg.eval.test_scenarios,
        "seed": cfg.seed,
    }
    path = out / "heuristics" / f"N{n}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached["rewards"], int(cached["horizon"])
        say(f"N = {n}: heuristics were evaluated with other settings; evaluating again")
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    t0 = time.perf_counter()
    test_env = domain.make_env(cfg.eval.test_scenarios)
    seeds = domain.test_seeds(cfg.eval.test_scenarios)
    rewards: dict[str, dict[str, float]] = {}
    for name, factory in domain.heuristics().items():
        res = evaluate_heuristic(factory, test_env, seeds, seed=cfg.seed)
        rewards[name] = {"mean": res.mean, "std": res.std}
    horizon = int(test_env.spec.horizon)
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "rewards": rewards, "horizon": horizon, "seconds": seconds}, indent=1))
    if rewards:
        shown = ", ".join(f"{k} {v['mean']:.2f}" for k, v in sorted(rewards.items(), key=lambda kv: -kv[1]["mean"]))
        say(f"N = {n}: heuristics {shown} ({seconds:.1f} s)")
    return rewards, horizon


def _converged_at(
    cell: CellResult, floor: float | None, target: float | None, criterion: ConvergenceCriterion
) -> int | None:
    if floor is None or target is None or floor == target:
        return None
    pairs = [(e, r) for e, r in zip(cell.curve_episodes, cell.curve) if e >= 1]
    if not pairs:
        return None
    k = criterion.episodes_to_converge([r for _, r in pairs], floor, target)
    return None if k is None else pairs[k - 1][0]


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def _summarise(
    cells: list[CellResult], arms: list[Arm], agents: list[int], defined: dict[int, bool]
) -> list[ArmSummary]:
    out = []
    for n in agents:
        for arm in arms:
            mine = sorted((c for c in cells if c.agents == n and c.arm == arm.name), key=lambda c: c.seed)
            if not mine:
                continue
            conv = [c.converged_at for c in mine]
            done = [k for k in conv if k is not None]
            best = _mean_std([c.best for c in mine])
            final = _mean_std([c.final for c in mine])
            secs = _mean_std([c.seconds for c in mine])
            out.append(
                ArmSummary(
                    agents=n,
                    arm=arm.name,
                    label=arm.label,
                    algo=arm.algo,
                    episodes=arm.episodes,
                    seeds=len(mine),
                    converged=len(done) if defined.get(n) else None,
                    episodes_to_converge=statistics.fmean(done) if done else None,
                    per_seed_converge=conv,
                    best_mean=best[0],
                    best_std=best[1],
                    final_mean=final[0],
                    final_std=final[1],
                    best_episode_mean=statistics.fmean(c.best_episode for c in mine),
                    seconds_mean=secs[0],
                    seconds_std=secs[1],
                )
            )
    return out


# ------------------------------------------------------------------ the study
def run_grid_study(
    settings: GridStudySettings, on_progress: Callable[[str], None] | None = None
) -> GridStudyResult:
    """Run (or resume) every cell of the study and write the outputs (module docstring).

    Every cell calls :func:`guidedmarl.experiment.run_experiment` (looked up at call time, so it can be
    replaced in tests). Cells run N by N (ascending), seed by seed, arm by arm; the outputs
    are rewritten after each N.
    """
    settings.check()
    say = on_progress or (lambda msg: None)
    start = time.perf_counter()
    out = settings.resolved_out()
    agents = sorted({int(n) for n in settings.agents})
    settings = replace(settings, out=out, agents=agents)
    arms = settings.arms()
    domain_cls = get_domain(settings.domain_name)
    ignored = [k for k in STUDY_CONTROLLED if k in settings.run_config]
    if ignored:
        say(f"note: the study sets {', '.join(ignored)} of every cell; those settings are ignored")
    # every cell's configuration (and the domain settings, the same in every cell) is checked
    # before any time is spent
    configs = {
        (arm.name, n, seed): _cell_config(settings, arm, n, seed, out)
        for n in agents
        for seed in settings.seeds
        for arm in arms
    }
    first = configs[(arms[0].name, agents[0], settings.seeds[0])]
    available = set(domain_cls.from_config(agents[0], first.domain_config).heuristics())
    missing = [h for h in (settings.floor, settings.target) if h not in available]
    if available and missing:
        raise ConfigError(
            f"convergence needs the heuristics {missing}, which domain '{settings.domain_name}' does not have "
            f"(it has {', '.join(sorted(available))}): choose --floor / --target among them"
        )
    out.mkdir(parents=True, exist_ok=True)

    cells: list[CellResult] = []
    heuristics: dict[int, dict[str, dict[str, float]]] = {}
    run_count = reused_count = 0
    result: GridStudyResult | None = None
    for n in agents:
        heuristics[n], horizon = _heuristics(settings, n, out, say)
        floor, target, note = _floor_target(settings, heuristics[n])
        for seed in settings.seeds:
            for arm in arms:
                cfg = configs[(arm.name, n, seed)]
                cell = _read_cell(cfg, arm, say)
                if cell is None:
                    res = _run_module.run_experiment(cfg)
                    summary = {
                        "best_test_reward": res.best_test_reward,
                        "best_episode": res.best_episode,
                        "final_test_reward": res.final_test_reward,
                        "final_test_reward_other_mode": res.final_test_reward_other_mode,
                        "seconds": res.seconds,
                    }
                    cell = _cell_from(cfg, arm, summary, res.metrics, reused=False)
                    run_count += 1
                else:
                    reused_count += 1
                cell.steps_per_episode = cfg.envs * horizon
                cell.converged_at = _converged_at(cell, floor, target, settings.criterion)
                cells.append(cell)
                conv = "" if floor is None else (
                    f", converged at episode {cell.converged_at}" if cell.converged_at else ", not converged"
                )
                say(
                    f"N = {n}, {arm.label}, seed {seed}: best {cell.best:.2f} (episode {cell.best_episode}), "
                    f"final {cell.final:.2f}{conv}, {cell.seconds:.1f} s"
                    + (" (finished earlier, reused)" if cell.reused else "")
                )
        result = _result(settings, cells, arms, heuristics, start, run_count, reused_count, note)
        write_outputs(result, settings)
    assert result is not None
    return result


def run_scale_study(settings: ScaleStudySettings, on_progress: Callable[[str], None] | None = None) -> GridStudyResult:
    """DG-PG against MAPPO and IPPO over N (``guidedmarl study scale``)."""
    return run_grid_study(settings, on_progress)


def run_alpha_study(settings: AlphaStudySettings, on_progress: Callable[[str], None] | None = None) -> GridStudyResult:
    """DG-PG with constant alphas and the default schedule (``guidedmarl study alpha``)."""
    return run_grid_study(settings, on_progress)


def _floor_target(
    settings: GridStudySettings, heuristics: dict[str, dict[str, float]]
) -> tuple[float | None, float | None, str]:
    missing = [h for h in (settings.floor, settings.target) if h not in heuristics]
    if missing:
        if heuristics:
            raise ConfigError(
                f"convergence needs the heuristics {missing}, which domain '{settings.domain_name}' does not have "
                f"(it has {', '.join(sorted(heuristics))}): choose --floor / --target among them"
            )
        return None, None, f"convergence not evaluated: domain '{settings.domain_name}' has no heuristics"
    floor, target = heuristics[settings.floor]["mean"], heuristics[settings.target]["mean"]
    if floor == target:
        return None, None, f"convergence not evaluated: {settings.floor} and {settings.target} score the same"
    return floor, target, ""


def _result(
    settings: GridStudySettings,
    cells: list[CellResult],
    arms: list[Arm],
    heuristics: dict[int, dict[str, dict[str, float]]],
    start: float,
    run_count: int,
    reused_count: int,
    note: str,
) -> GridStudyResult:
    done = sorted({c.agents for c in cells})
    defined = {n: _floor_target(settings, heuristics[n])[0] is not None for n in done}
    notes = [f"N = {n}: {_floor_target(settings, heuristics[n])[2]}" for n in done]
    notes = [m for m, n in zip(notes, done) if not defined[n]]
    return GridStudyResult(
        out=Path(settings.resolved_out()),
        cells=list(cells),
        summaries=_summarise(cells, arms, done, defined),
        heuristics={n: {k: v["mean"] for k, v in heuristics[n].items()} for n in done},
        seconds=time.perf_counter() - start,
        cells_run=run_count,
        cells_reused=reused_count,
        convergence_note="; ".join(notes) or note,
    )


# ------------------------------------------------------------------ outputs
def _spread(mean: float, std: float, digits: int = 1) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


def _conv_text(s: ArmSummary) -> tuple[str, str]:
    if s.converged is None:
        return "n/a", "n/a"
    per = ", ".join("–" if k is None else str(k) for k in s.per_seed_converge)
    mean = f"{s.episodes_to_converge:.1f}" if s.episodes_to_converge is not None else "–"
    return f"{s.converged}/{s.seeds}", f"{mean} [{per}]"


def _heuristic_order(result: GridStudyResult) -> list[str]:
    names: dict[str, list[float]] = {}
    for per in result.heuristics.values():
        for k, v in per.items():
            names.setdefault(k, []).append(v)
    return sorted(names, key=lambda k: -statistics.fmean(names[k]))


def write_outputs(result: GridStudyResult, settings: GridStudySettings) -> None:
    """Write table, CSVs, JSON, plots, marl-eval export and command.txt into ``result.out``."""
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    arms = settings.arms()
    study = settings.study
    command = settings.command or f"(Python API: guidedmarl.studies.scale.run_{study}_study)"

    # per-cell CSV
    with (out / "runs.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["N", "arm", "algo", "seed", "episodes", "best_test_reward", "best_episode", "final_test_reward",
             "final_test_reward_other_mode", "episodes_to_converge", "seconds", "reused", "run_dir"]
        )  # fmt: skip
        for c in result.cells:
            writer.writerow(
                [c.agents, c.arm, c.algo, c.seed, c.episodes, c.best, c.best_episode, c.final, c.final_other_mode,
                 "" if c.converged_at is None else c.converged_at, f"{c.seconds:.2f}", c.reused, str(c.out)]
            )  # fmt: skip

    # the table, CSV
    floor_target = {}
    for n, per in result.heuristics.items():
        floor_target[n] = (per.get(settings.floor), per.get(settings.target))
    with (out / f"{study}.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["N", "kind", "name", "label", "algo", "episodes", "seeds", "converged", "episodes_to_converge_mean",
             "episodes_to_converge_per_seed", "best_test_reward_mean", "best_test_reward_std",
             "final_test_reward_mean", "final_test_reward_std", "best_episode_mean", "seconds_mean", "seconds_std",
             "floor", "target"]
        )  # fmt: skip
        for s in result.summaries:
            fl, tg = floor_target.get(s.agents, (None, None))
            writer.writerow(
                [s.agents, "learner", s.arm, s.label, s.algo, s.episodes, s.seeds,
                 "" if s.converged is None else s.converged,
                 "" if s.episodes_to_converge is None else s.episodes_to_converge,
                 ";".join("" if k is None else str(k) for k in s.per_seed_converge),
                 s.best_mean, s.best_std, s.final_mean, s.final_std, s.best_episode_mean, s.seconds_mean,
                 s.seconds_std, fl, tg]
            )  # fmt: skip
        for n, per in result.heuristics.items():
            for name in _heuristic_order(result):
                if name in per:
                    writer.writerow(
                        [n, "heuristic", name, name, "", "", "", "", "", "", per[name], "", per[name], "", "", "", "",
                         floor_target[n][0], floor_target[n][1]]
                    )  # fmt: skip

    _write_markdown(result, settings, arms, command)

    # JSON with everything
    doc = {
        "study": study,
        "title": settings.title,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(settings).items()
            if k not in ("criterion",)
        },
        "criterion": asdict(settings.criterion),
        "arms": [asdict(a) for a in arms],
        "heuristics": {str(n): v for n, v in result.heuristics.items()},
        "summaries": [asdict(s) for s in result.summaries],
        "cells": [{**asdict(c), "out": str(c.out)} for c in result.cells],
        "seconds": result.seconds,
        "cells_run": result.cells_run,
        "cells_reused": result.cells_reused,
        "convergence_note": result.convergence_note,
        "machine": machine_info(),
    }
    (out / f"{study}.json").write_text(json.dumps(finite_or_null(doc), indent=1, allow_nan=False))

    # marl-eval export (common evaluation steps: marl-eval needs equal step counts)
    curves = [
        RunCurve(
            task=f"N{c.agents}",
            algorithm=c.arm,
            run=f"run_{c.seed}",
            step_counts=[e * c.steps_per_episode for e in c.curve_episodes],
            values=c.curve,
            absolute=c.best,
        )
        for c in result.cells
    ]
    export_error = ""
    try:
        data = build_marl_eval(settings.domain_name, curves, metric="return", steps="common")
        (out / "marl_eval.json").write_text(json.dumps(data, indent=1))
    except (MarlEvalFormatError, ValueError) as exc:  # e.g. a non-finite test reward: keep the other outputs
        (out / "marl_eval.json").unlink(missing_ok=True)
        export_error = f"marl_eval.json not written: {exc}"

    lines = [
        f"cells run: {result.cells_run}, reused from earlier runs: {result.cells_reused}",
        f"sum of the cells' own run times (all cells, earlier invocations included): "
        f"{sum(c.seconds for c in result.cells):.1f} s",
    ]
    if export_error:
        lines.append(export_error)
    write_command_file(out, command, result.seconds, lines)

    for n in sorted(result.heuristics):
        plot_curves(result, settings, n, out / f"curves_N{n}.png")
    plot_episodes_to_converge(result, settings, out / "episodes_to_converge.png")


def _eval_every(settings: GridStudySettings) -> int:
    return int((settings.run_config.get("eval") or {}).get("every", 1))


def _write_markdown(result: GridStudyResult, settings: GridStudySettings, arms: list[Arm], command: str) -> None:
    crit = settings.criterion
    budget = ", ".join(f"{a.label} {a.episodes}" for a in arms)
    md = [
        f"# {settings.title}: `{settings.domain_name}`",
        "",
        *command_block(command),
        f"* grid: N in {sorted(result.heuristics)}, seeds {list(settings.seeds)}; training episodes: {budget}",
        "* every cell is one `guidedmarl run` with the same networks, PPO settings, training and test scenarios; "
        "the arms differ only in "
        + " and ".join(
            ["the algorithm"] * (len({a.algo for a in arms}) > 1)
            + ["the episode budget"] * (len({a.episodes for a in arms}) > 1)
            + ["alpha"] * (any(a.alpha is not None for a in arms))
        ),
        f"* test reward: mean episodic team reward over the held-out test scenarios after each training episode; "
        f"mean ± sample std over seeds",
        f"* convergence: `ConvergenceCriterion(window={crit.window}, tolerance={crit.tolerance}, "
        f"min_fraction={crit.min_fraction})` on the test-reward curve (episodes 1...), floor = `{settings.floor}`, "
        f"target = `{settings.target}` at the same N; episodes to converge: mean over converged seeds "
        "[per seed, – = not converged]",
        f"* wall-clock of this invocation: {result.seconds:.0f} s ({result.cells_run} cells run, "
        f"{result.cells_reused} reused); per run: the run's own time (heuristics excluded)",
    ]
    if result.convergence_note:
        md.append(f"* {result.convergence_note}")
    short = [a.label for a in arms if a.episodes // max(1, _eval_every(settings)) < crit.window]
    if short:
        md.append(
            f"* {', '.join(short)}: fewer than {crit.window} evaluations (the criterion's window), so these runs "
            "cannot converge by this definition"
        )
    md += [
        "",
        "| N | algorithm | episodes | converged | episodes to converge | best-checkpoint test reward "
        "| final test reward | best episode | wall-clock per run (s) |",
        "|---:|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for s in result.summaries:
        conv, eps = _conv_text(s)
        md.append(
            f"| {s.agents} | {s.label} | {s.episodes} | {conv} | {eps} | {_spread(s.best_mean, s.best_std)} | "
            f"{_spread(s.final_mean, s.final_std)} | {s.best_episode_mean:.1f} | "
            f"{_spread(s.seconds_mean, s.seconds_std)} |"
        )
    names = _heuristic_order(result)
    if names:
        md += [
            "",
            "Heuristics on the same test scenarios (test reward; Random seeded with the first study seed):",
            "",
            "| N | " + " | ".join(names) + " |",
            "|---:|" + "---:|" * len(names),
        ]
        for n, per in sorted(result.heuristics.items()):
            md.append(f"| {n} | " + " | ".join(f"{per[k]:.1f}" if k in per else "–" for k in names) + " |")
    md.append("")
    (result.out / f"{settings.study}.md").write_text("\n".join(md))


def plot_curves(result: GridStudyResult, settings: GridStudySettings, n: int, path: Path) -> Path:
    """Test reward against episode at one N: mean over seeds per arm, min-max band, floor and target lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from guidedmarl.plotting import legend_right, save_figure, set_reward_scale

    fig, ax = plt.subplots(figsize=(9, 4.4))
    for k, arm in enumerate(settings.arms()):
        mine = [c for c in result.cells if c.agents == n and c.arm == arm.name]
        if not mine:
            continue
        length = min(len(c.curve) for c in mine)
        episodes = mine[0].curve_episodes[:length]
        columns = [[c.curve[i] for c in mine] for i in range(length)]
        mean = [statistics.fmean(col) for col in columns]
        ax.plot(episodes, mean, marker="o", ms=3, color=f"C{k}", label=f"{arm.label} (mean of {len(mine)} seeds)")
        if len(mine) > 1:
            ax.fill_between(episodes, [min(c) for c in columns], [max(c) for c in columns], color=f"C{k}", alpha=0.15)
    per = result.heuristics.get(n, {})
    for name, style in ((settings.target, "--"), (settings.floor, ":")):
        if name in per:
            ax.axhline(per[name], ls=style, color="0.25", lw=1.2, label=f"{name} (heuristic): {per[name]:.1f}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training episode (0: untrained policy)")
    ax.set_ylabel("test reward (held-out scenarios)")
    set_reward_scale(ax)
    ax.set_title(f"{settings.domain_name}, N = {n}: test reward, min-max band over seeds")
    ax.grid(alpha=0.3)
    legend_right(ax)
    return save_figure(fig, path)


def plot_episodes_to_converge(result: GridStudyResult, settings: GridStudySettings, path: Path) -> Path:
    """Episodes to converge against N per arm (log x); runs that did not converge as 'x' on a top row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullFormatter

    from guidedmarl.plotting import legend_right, save_figure

    arms = settings.arms()
    fig, ax = plt.subplots(figsize=(8.5, 4.4))
    top = max((a.episodes for a in arms), default=1) + 2
    ns = sorted(result.heuristics)
    defined = {s.agents for s in result.summaries if s.converged is not None}
    for k, arm in enumerate(arms):
        # small horizontal offset per arm (multiplicative: the axis is logarithmic)
        shift = 1.0 + 0.1 * (k - (len(arms) - 1) / 2)
        conv_x, conv_y, miss_x, line_x, line_y = [], [], [], [], []
        for n in ns:
            if n not in defined:
                continue
            mine = [c for c in result.cells if c.agents == n and c.arm == arm.name]
            got = [c.converged_at for c in mine if c.converged_at is not None]
            conv_x += [n * shift] * len(got)
            conv_y += got
            if len(mine) > len(got):
                miss_x.append(n * shift)
                ax.annotate(
                    f"{len(mine) - len(got)}/{len(mine)}", (n * shift, top), xytext=(0, 6 + 7 * (k % 2)),
                    textcoords="offset points", ha="center", fontsize=6, color=f"C{k}",
                )  # fmt: skip
            if got:
                line_x.append(n * shift)
                line_y.append(statistics.fmean(got))
        if line_x:
            ax.plot(line_x, line_y, "-", color=f"C{k}", lw=1.2, label=f"{arm.label}: mean over converged seeds")
        if conv_x:
            ax.plot(conv_x, conv_y, "o", color=f"C{k}", ms=5, alpha=0.7, mfc="none")
        if miss_x:
            ax.plot(
                miss_x, [top] * len(miss_x), "x", color=f"C{k}", ms=8, mew=2,
                label=f"{arm.label}: not converged (k/S seeds)",
            )  # fmt: skip
    ax.axhline(top - 1, color="0.6", lw=0.8, ls="--")
    ax.set_xscale("log")
    if ns:
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(min(ns) / 1.25, max(ns) * 1.25)
    ax.set_ylim(0, top + 2.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ticks = [t for t in ax.get_yticks() if 0 <= t < top - 1.5]
    ax.set_yticks(ticks + [top])
    ax.set_yticklabels([f"{t:g}" for t in ticks] + ["not conv."])
    ax.set_xlabel("number of agents N")
    ax.set_ylabel("episodes to converge")
    note = f"\n{result.convergence_note}" if result.convergence_note else ""
    ax.set_title(
        f"{settings.domain_name}: episodes to converge (floor {settings.floor}, target {settings.target}){note}",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        legend_right(ax)
    return save_figure(fig, path)

