"""The referee's stress test: does DG-PG survive a deliberately imperfect analytical model?

The method's guarantees assume the analytical model is right. This study replaces it by
the surrogates of :mod:`guidedmarl.analytical.surrogates` (a biased reference, a noisy
reference, a rounded, non-differentiable state map) and measures, for each *variant*,
the two claims that matter:

* **Variance** (estimator structure): the variance study
  (:mod:`guidedmarl.studies.variance`) on a reduced N grid (default 10, 100, 1000; R and T
  as that study's defaults), with the surrogate in the guidance estimator (b) and the mix
  (c). Recorded: the fitted slope of log(variance) and log(relative variance) against
  log(N) for (b) and (c), with bootstrap 95 % intervals (regression intervals in the JSON).
  (a) does not involve the model and is identical in every variant.
* **Learning** (alignment): DG-PG trained with :func:`guidedmarl.experiment.run_experiment` at one N
  (default 50, 10 episodes, seeds 0 1 2), every setting identical except the model.
  Recorded: best-checkpoint and final test reward, and the episodes to converge of
  :class:`~guidedmarl.convergence.ConvergenceCriterion` (defaults) on the test-reward curve
  of episodes 1..K (episode 0, the untrained policy, excluded), with the domain's ``floor``
  heuristic (default ``random``) and ``target`` heuristic (default ``best_fit``) of the
  same seed as floor and target. The same for a no-guidance reference learner (default
  MAPPO, which is DG-PG with alpha = 0).
* **Guidance agreement** (a cheap diagnostic): on the same sampled actions and states
  (8 training scenarios, T steps, at the learning N), the Pearson correlation of the
  surrogate's guidance weights with the exact ones over the agents that acted, and the
  fraction of exactly zero surrogate weights (the rounded map gives zero guidance wherever
  one job does not move a reading across a rounding step). Measured twice: with the fresh
  policy of the first seed, whose random dispatch puts the state far from the reference
  (large x - x_ref, so a shifted reference changes g little), and with the final policy of
  the exact model's run of that seed (``final.pt``), near the guidance target, where a
  surrogate's error weighs most.

Heuristics are evaluated once per seed (``eval.heuristics`` is on in the first run of a
seed that has to be trained, off in the others, and stored in ``heuristics/``); their
scores do not depend on the learner.

Resuming: every finished cell (a variant's variance study; a (learner, variant, seed)
run) stores its settings and results next to its outputs (``stress_cell.json``); a later
call with the same settings reads the cell instead of re-running it, and re-runs a cell
whose settings changed.

Outputs in ``out`` (default ``runs/stress-DOMAIN``): ``stress.md``, ``stress.csv``,
``stress.json``, ``stress_curves.png``, ``stress_variance.png``, ``command.txt``; per-cell
folders ``variance/VARIANT/`` and ``runs/LEARNER-VARIANT-sSEED/``.
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

import numpy as np
import torch

from guidedmarl.analytical.surrogates import wrap_surrogate
from guidedmarl.config import ConfigError, RunConfig, build_config, deep_merge
from guidedmarl.convergence import ConvergenceCriterion
from guidedmarl.domain import get_domain
from guidedmarl.evaluation import evaluate_heuristic
from guidedmarl.experiment import build
from guidedmarl.experiment import run_experiment as run_training
from guidedmarl.studies.common import (
    command_block,
    finite_or_null,
    interval_text,
    machine_info,
    slope_label,
    write_command_file,
)
from guidedmarl.studies.variance import (
    VarianceStudySettings,
    parse_surrogate,
    run_variance_study,
    surrogate_dict,
    surrogate_label,
)
from guidedmarl.guidance.weights import guidance_weights

DEFAULT_VARIANTS: tuple[str, ...] = (
    "exact",
    "biased:beta=0.1",
    "biased:beta=0.3",
    "biased:beta=1.0",
    "noisy:sigma=0.3",
    "noisy:sigma=1.0",
    "rounded:step=0.1",
    "rounded:step=0.5",
)
"""Default variants. Cloud: x is a server's committed utilisation; one job moves it by
about 0.01-0.25 (median 0.06 CPU, 0.03 memory at N = 50), so step 0.1 is about twice a
typical job's effect and step 0.5 about ten times (most guidance weights become 0)."""
DEFAULT_VARIANCE_AGENTS: tuple[int, ...] = (10, 100, 1000)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
REFERENCE_LEARNERS = ("mappo", "ippo")
AGREEMENT_ENVS = 8
CELL_FILE = "stress_cell.json"


# ------------------------------------------------------------------ settings and results
@dataclass
class StressSettings:
    """What ``guidedmarl study stress`` runs (see the module docstring).

    Attributes:
        domain: registered domain (None: ``run_config["domain"]``, else ``cloud``).
        variants: surrogate specifications (text, dict or config; see
            :func:`guidedmarl.studies.variance.parse_surrogate`); ``exact`` is the exact model.
        agents: N of the learning runs.
        episodes: training episodes per run.
        seeds: run seeds of the learning runs.
        reference: no-guidance learner trained on the same settings (``mappo``, ``ippo``) or None.
        floor, target: heuristics used as floor and target of the convergence criterion.
        variance_agents: N grid of the variance part (empty: no variance part).
        rollouts, scenarios, horizon, bootstrap, variance_seed: the variance study's settings.
        threads: torch intra-op threads of every run (None: torch's default).
        out: output directory (None: ``runs/stress-DOMAIN``).
        run_config: ``RunConfig``-shaped settings shared by every run (``domain_config``,
            ``ppo``, ``guidance``, ``eval``...); the study sets ``algo``, ``agents``,
            ``episodes``, ``seed``, ``out`` and ``guidance.surrogate`` itself.
        command: the command line, written to ``command.txt``.
    """

    domain: str | None = None
    variants: list[Any] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    agents: int = 50
    episodes: int = 10
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    reference: str | None = "mappo"
    floor: str = "random"
    target: str = "best_fit"
    variance_agents: list[int] = field(default_factory=lambda: list(DEFAULT_VARIANCE_AGENTS))
    rollouts: int = 64
    scenarios: int = 4
    horizon: int | None = None
    bootstrap: int = 200
    variance_seed: int = 0
    threads: int | None = None
    out: Path | None = None
    run_config: dict[str, Any] = field(default_factory=dict)
    command: str | None = None

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first unusable value."""
        if not self.variants:
            raise ConfigError("variants: give at least one variant")
        labels = [surrogate_label(v) for v in self.variants]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ConfigError(f"variants: each variant at most once, got {twice} twice")
        if self.agents < 1:
            raise ConfigError(f"agents: must be >= 1, got {self.agents}")
        if self.episodes < 1:
            raise ConfigError(f"episodes: must be >= 1, got {self.episodes}")
        if not self.seeds:
            raise ConfigError("seeds: give at least one seed")
        if any(s < 0 for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: distinct non-negative integers expected, got {self.seeds}")
        if self.reference is not None and self.reference not in REFERENCE_LEARNERS:
            raise ConfigError(f"reference: one of {', '.join(REFERENCE_LEARNERS)} or none, got {self.reference!r}")
        if self.floor == self.target:
            raise ConfigError(f"floor and target must be different heuristics, got {self.floor!r} twice")
        if self.variance_agents:
            self.variance_settings(None, Path("unused"), {}).check()

    def variance_settings(self, variant: Any, out: Path, base: dict[str, Any]) -> VarianceStudySettings:
        """The variance study of one variant (``base``: the shared run settings)."""
        return VarianceStudySettings(
            domain=base.get("domain") or self.domain or self.run_config.get("domain") or "cloud",
            agents=list(self.variance_agents),
            rollouts=self.rollouts,
            scenarios=self.scenarios,
            horizon=self.horizon,
            seed=self.variance_seed,
            bootstrap=self.bootstrap,
            threads=self.threads,
            out=out,
            run_config=base,
            surrogate=surrogate_dict(variant),
        )


@dataclass
class StressResult:
    out: Path
    rows: list[dict[str, Any]]  # one per variant, then the reference learner
    cells: list[dict[str, Any]]  # every learning run (per variant / learner and seed)
    variance: dict[str, dict[str, Any]]  # variant label -> fits and rows of its variance study
    heuristics: dict[int, dict[str, float]]  # seed -> heuristic -> test reward
    agreement: dict[str, dict[str, Any]]  # variant label -> {"fresh"|"trained": agreement with the exact model}
    seconds: float
    executed: dict[str, int]  # cells run in this call: {"variance": k, "learning": m}


def _slug(label: str) -> str:
    return label.replace(" (", "-").replace(")", "").replace(" ", "-").replace("=", "")


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (for comparing stored settings), NaN and infinities as None."""
    return json.loads(json.dumps(finite_or_null(obj), default=str))


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _read_cell(folder: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The stored cell of ``folder`` if it was produced with these settings."""
    path = folder / CELL_FILE
    if not path.is_file():
        return None
    try:
        cell = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    return cell if cell.get("spec") == _jsonable(spec) else None


def _write_cell(folder: Path, cell: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CELL_FILE + ".tmp")
    tmp.write_text(json.dumps(finite_or_null(cell), indent=1, default=str))
    tmp.replace(folder / CELL_FILE)  # written last and atomically: a cell file means a finished cell


# ------------------------------------------------------------------ configuration
def _base(settings: StressSettings) -> dict[str, Any]:
    """Shared run settings, without a surrogate (each variant sets its own)."""
    data = deep_merge(settings.run_config, {})
    guidance = dict(data.get("guidance") or {})
    guidance.pop("surrogate", None)
    if guidance or "guidance" in data:
        data["guidance"] = guidance
    data["domain"] = settings.domain or data.get("domain", "cloud")
    return data


def _learning_config(
    settings: StressSettings, base: dict[str, Any], algo: str, variant: Any, seed: int, out: Path, heuristics: bool
) -> RunConfig:
    data = deep_merge(base, {})
    data.update(algo=algo, agents=settings.agents, episodes=settings.episodes, seed=seed, out=str(out))
    data["threads"] = settings.threads
    data["guidance"] = {**(data.get("guidance") or {}), "surrogate": surrogate_dict(variant) if algo == "dgpg" else None}
    data["eval"] = {**(data.get("eval") or {}), "heuristics": heuristics}
    return build_config(data, "stress study settings")


def _run_spec(cfg: RunConfig) -> dict[str, Any]:
    """What determines a run's numbers: the configuration without its folder and heuristics flag."""
    spec = cfg.model_dump(mode="json")
    spec.pop("out", None)
    spec["eval"].pop("heuristics", None)
    return spec


def _heuristics_spec(cfg: RunConfig) -> dict[str, Any]:
    return {
        "domain": cfg.domain,
        "agents": cfg.agents,
        "seed": cfg.seed,
        "domain_config": cfg.domain_config,
        "test_scenarios": cfg.eval.test_scenarios,
    }


def _evaluate_heuristics(cfg: RunConfig) -> dict[str, float]:
    """Every heuristic of the domain on the run's test scenarios (as ``run`` does)."""
    domain = get_domain(cfg.domain).from_config(cfg.agents, cfg.domain_config)
    env = domain.make_env(cfg.eval.test_scenarios)
    seeds = domain.test_seeds(cfg.eval.test_scenarios)
    return {name: evaluate_heuristic(f, env, seeds, seed=cfg.seed).mean for name, f in domain.heuristics().items()}


# ------------------------------------------------------------------ measurements
def episodes_to_converge(curve: list[float | None], floor: float, target: float) -> int | None:
    """Episodes to converge of a test-reward curve whose entry 0 is the untrained policy.

    Only evaluated episodes count (entries that are None are skipped); the result is an
    episode number (1-based), or None when the run did not converge.
    """
    evaluated = [(k, r) for k, r in enumerate(curve) if k >= 1 and r is not None]
    k = ConvergenceCriterion().episodes_to_converge([r for _, r in evaluated], floor, target)
    return None if k is None else evaluated[k - 1][0]


@torch.no_grad()
def guidance_agreement(
    cfg: RunConfig, variants: list[Any], steps: int, envs: int = AGREEMENT_ENVS, checkpoint: Path | None = None
) -> dict[str, dict]:
    """Correlation of each surrogate's guidance weights with the exact ones, on the same data.

    The policy (fresh for ``cfg``, or the actor of ``checkpoint``) acts in ``envs``
    training scenarios for ``steps`` steps; at every step each variant's model computes g
    for the same sampled actions and state.
    """
    cfg = cfg.model_copy(update={"envs": envs, "algo": "dgpg"})
    data = cfg.model_dump(mode="json")
    data["learner"]["estimator"]["surrogate"] = None
    cfg = RunConfig.model_validate(data)
    domain, trainer = build(cfg)
    if checkpoint is not None:
        trainer.actor.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["actor"])
    exact = trainer.model
    assert exact is not None
    models = {surrogate_label(v): wrap_surrogate(exact, parse_surrogate(v), cfg.seed) for v in variants}
    env = trainer.env
    step = env.reset(domain.train_seeds(0, envs, cfg.seed))
    exact_g: list[torch.Tensor] = []
    per: dict[str, list[torch.Tensor]] = {k: [] for k in models}
    exact_difference = cfg.learner.estimator.weight == "exact_difference"  # type: ignore[attr-defined]
    for _ in range(min(steps, env.spec.horizon)):
        actions = trainer.actor.distribution(step.obs).sample()
        context = env.model_context()
        mask = step.active
        if mask.any():
            exact_g.append(guidance_weights(exact, actions, context, exact_difference)[mask].double())
            for label, model in models.items():
                per[label].append(guidance_weights(model, actions, context, exact_difference)[mask].double())
        step = env.step(actions)
    out: dict[str, dict] = {}
    if not exact_g:
        return {k: {"corr": float("nan"), "zero_fraction": float("nan"), "samples": 0} for k in models}
    ge = torch.cat(exact_g)
    for label, parts in per.items():
        g = torch.cat(parts)
        if g.numel() > 1 and float(g.std()) > 0 and float(ge.std()) > 0:
            corr = float(torch.corrcoef(torch.stack([ge, g]))[0, 1])
        else:
            corr = float("nan")
        scale = float(ge.abs().max()) if ge.numel() else 0.0
        zero = float((g.abs() <= 1e-12 * max(scale, 1e-300)).double().mean())
        out[label] = {"corr": corr, "zero_fraction": zero, "samples": int(g.numel())}
    return out


def _fit_entry(fit: dict[str, Any] | None) -> dict[str, float]:
    fit = fit or {}
    return {
        "slope": _num(fit.get("slope")),
        "low": _num(fit.get("boot_low")),
        "high": _num(fit.get("boot_high")),
        "reg_low": _num(fit.get("ci_low")),
        "reg_high": _num(fit.get("ci_high")),
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


# ------------------------------------------------------------------ the study
def run_stress_study(settings: StressSettings, on_progress: Callable[[str], None] | None = None) -> StressResult:
    """Run (or resume) every cell of the stress test and write the outputs to ``out``."""
    settings.check()
    say = on_progress or (lambda msg: None)
    start = time.perf_counter()
    base = _base(settings)
    name = base["domain"]
    out = Path(settings.out) if settings.out is not None else Path(f"runs/stress-{name}")
    settings = replace(settings, out=out, domain=name)
    variants = [parse_surrogate(v) for v in settings.variants]
    labels = [surrogate_label(v) for v in variants]

    # every setting is checked before any time is spent
    probe = _learning_config(settings, base, "dgpg", variants[0], settings.seeds[0], out / "probe", False)
    domain = get_domain(name).from_config(settings.agents, probe.domain_config)
    known = domain.heuristics()
    for role, heuristic in (("floor", settings.floor), ("target", settings.target)):
        if heuristic not in known:
            raise ConfigError(f"{role} heuristic {heuristic!r} is not one of {name}'s: {', '.join(sorted(known))}")
    for v in variants:
        _learning_config(settings, base, "dgpg", v, settings.seeds[0], out / "probe", False)
    out.mkdir(parents=True, exist_ok=True)
    executed = {"variance": 0, "learning": 0}

    # ---- variance
    variance: dict[str, dict[str, Any]] = {}
    if settings.variance_agents:
        for v, label in zip(variants, labels):
            folder = out / "variance" / _slug(label)
            vs = settings.variance_settings(v, folder, base)
            spec = {k: val for k, val in asdict(vs).items() if k not in ("out", "command")}
            cell = _read_cell(folder, spec)
            if cell is None:
                say(f"variance, {label}: N in {sorted(set(vs.agents))}")
                vs.command = f"(guidedmarl study stress, variant {label}) -> {settings.command or 'Python API'}"
                t0 = time.perf_counter()
                run_variance_study(vs)
                doc = json.loads((folder / "variance.json").read_text())
                cell = {"spec": spec, "fits": doc["fits"], "rows": doc["rows"], "seconds": time.perf_counter() - t0}
                _write_cell(folder, cell)
                executed["variance"] += 1
                cell = json.loads((folder / CELL_FILE).read_text())
                cell["reused"] = False
            else:
                say(f"variance, {label}: done before, reused")
                cell["reused"] = True
            variance[label] = cell

    # ---- learning
    learners: list[tuple[str, Any, str]] = [("dgpg", v, label) for v, label in zip(variants, labels)]
    if settings.reference is not None:
        learners.append((settings.reference, None, settings.reference.upper()))
    cells: list[dict[str, Any]] = []
    heuristics: dict[int, dict[str, float]] = {}
    for seed in settings.seeds:
        hfolder = out / "heuristics" / f"s{seed}"
        hspec = _heuristics_spec(probe.model_copy(update={"seed": seed}))
        stored = _read_cell(hfolder, hspec)
        values: dict[str, float] | None = stored["values"] if stored else None
        for algo, v, label in learners:
            tag = "dgpg-" + _slug(label) if algo == "dgpg" else algo
            folder = out / "runs" / f"{tag}-s{seed}"
            cfg = _learning_config(settings, base, algo, v, seed, folder, heuristics=values is None)
            spec = _run_spec(cfg)
            cell = _read_cell(folder, spec)
            if cell is not None:
                say(f"{label}, seed {seed}: done before, reused")
                cell["reused"] = True
            else:
                say(f"{label}, seed {seed}: training {cfg.algo} at N = {cfg.agents}, {cfg.episodes} episodes")
                result = run_training(cfg)
                cell = {
                    "spec": spec,
                    "algo": algo,
                    "variant": label,
                    "surrogate": surrogate_dict(v) if algo == "dgpg" else None,
                    "seed": seed,
                    "curve": [m.get("test_reward") for m in result.metrics],
                    "best": result.best_test_reward,
                    "best_episode": result.best_episode,
                    "final": result.final_test_reward,
                    "final_other_mode": result.final_test_reward_other_mode,
                    "seconds": result.seconds,
                    "baselines": {k: r.mean for k, r in result.baselines.items()},
                }
                _write_cell(folder, cell)
                executed["learning"] += 1
                cell = json.loads((folder / CELL_FILE).read_text())
                cell["reused"] = False
                say(f"  best {_num(cell['best']):.2f} (episode {cell['best_episode']}), final {_num(cell['final']):.2f}")
            if values is None and cell.get("baselines"):
                values = cell["baselines"]
                _write_cell(hfolder, {"spec": hspec, "values": values})
            cell["folder"] = str(folder)
            cells.append(cell)
        if values is None:  # every run was reused and none holds the heuristics
            values = _evaluate_heuristics(probe.model_copy(update={"seed": seed}))
            _write_cell(hfolder, {"spec": hspec, "values": values})
        heuristics[seed] = {k: float(x) for k, x in values.items()}
        floor, target = heuristics[seed][settings.floor], heuristics[seed][settings.target]
        for cell in cells:
            if cell["seed"] == seed:
                curve = [None if r is None else float(r) for r in cell["curve"]]
                cell["episodes_to_converge"] = episodes_to_converge(curve, floor, target)

    # ---- guidance agreement (cheap, recomputed): fresh policy, and the exact model's trained policy
    agreement: dict[str, dict[str, Any]] = {}
    if any(v is not None for v in variants):
        steps = settings.horizon or 20
        fresh = guidance_agreement(probe, variants, steps)
        trained_ckpt = out / "runs" / f"dgpg-exact-s{settings.seeds[0]}" / "final.pt"
        trained = (
            guidance_agreement(probe, variants, steps, checkpoint=trained_ckpt)
            if "exact" in labels and trained_ckpt.is_file()
            else {}
        )
        agreement = {label: {"fresh": fresh[label], "trained": trained.get(label)} for label in fresh}

    rows = _table(settings, labels, learners, cells, variance, agreement)
    seconds = time.perf_counter() - start
    result = StressResult(out, rows, cells, variance, heuristics, agreement, seconds, executed)
    _write_outputs(result, settings)
    return result


def _table(
    settings: StressSettings,
    labels: list[str],
    learners: list[tuple[str, Any, str]],
    cells: list[dict[str, Any]],
    variance: dict[str, dict[str, Any]],
    agreement: dict[str, dict[str, float]],
) -> list[dict[str, Any]]:
    """One row per learner (every variant, then the reference learner)."""
    exact_label = "exact" if "exact" in labels else None
    by = {(c["algo"], c["variant"], c["seed"]): c for c in cells}
    rows = []
    shared = _fit_entry(next(iter(variance.values()), {}).get("fits", {}).get("variance", {}).get("shared"))
    for algo, v, label in learners:
        mine = [by[(algo, label, s)] for s in settings.seeds]
        row: dict[str, Any] = {"variant": label, "learner": algo, "surrogate": json.dumps(surrogate_dict(v))}
        fits = variance.get(label, {}).get("fits", {}) if algo == "dgpg" else {}
        for est, prefix in (("guidance", "guidance"), ("dgpg", "mixed")):
            for quantity, name in (("variance", "variance"), ("relative_variance", "relvar")):
                entry = _fit_entry(fits.get(quantity, {}).get(est))
                for key, value in entry.items():
                    row[f"{prefix}_{name}_slope" + ("" if key == "slope" else f"_{key}")] = value
        for key, value in shared.items():  # (a): no model involved, the same in every variant
            row["shared_variance_slope" + ("" if key == "slope" else f"_{key}")] = value
        agree = agreement.get(label, {}) if algo == "dgpg" else {}
        for policy in ("fresh", "trained"):
            part = agree.get(policy) or {}
            row[f"g_corr_{policy}"] = _num(part.get("corr"))
            row[f"g_zero_{policy}"] = _num(part.get("zero_fraction"))
        conv = [c.get("episodes_to_converge") for c in mine]
        done = [k for k in conv if k is not None]
        row["episodes_to_converge"] = ";".join("none" if k is None else str(k) for k in conv)
        row["converged"] = len(done)
        row["seeds"] = len(mine)
        row["episodes_to_converge_mean"] = statistics.fmean(done) if done else float("nan")
        for key in ("best", "final", "final_other_mode"):
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([_num(c[key]) for c in mine])
        row["best_episode_mean"] = statistics.fmean(float(c["best_episode"]) for c in mine)
        row["seconds_mean"] = statistics.fmean(float(c["seconds"]) for c in mine)
        for key in ("best", "final"):
            if exact_label is None:
                diffs = []
            else:
                diffs = [_num(c[key]) - _num(by[("dgpg", exact_label, c["seed"])][key]) for c in mine]
            row[f"{key}_diff_mean"], row[f"{key}_diff_std"] = _mean_std(diffs)
        rows.append(row)
    return rows


# ------------------------------------------------------------------ outputs
def _pm(mean: float, std: float, digits: int = 1) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _slope_text(row: dict[str, Any], key: str) -> str:
    slope = row.get(key, float("nan"))
    if not math.isfinite(slope):
        return "–"
    low, high = row.get(f"{key}_low", float("nan")), row.get(f"{key}_high", float("nan"))
    if math.isfinite(low):
        return f"{slope:.2f} [{low:.2f}, {high:.2f}]"
    rl, rh = row.get(f"{key}_reg_low", float("nan")), row.get(f"{key}_reg_high", float("nan"))
    return f"{slope:.2f} (reg. [{rl:.2f}, {rh:.2f}])" if math.isfinite(rl) else f"{slope:.2f}"


def _conv_text(row: dict[str, Any]) -> str:
    mean = row["episodes_to_converge_mean"]
    head = f"{mean:.1f}" if math.isfinite(mean) else "–"
    return f"{head} ({row['converged']}/{row['seeds']})"


def _agree_text(row: dict[str, Any]) -> str:
    if row["learner"] != "dgpg":
        return "–"
    if row["variant"] == "exact":
        return "1 / 1"

    def one(policy: str) -> str:
        corr, zero = row[f"g_corr_{policy}"], row[f"g_zero_{policy}"]
        if not math.isfinite(corr):
            return "n/a"
        return f"{corr:.2f}" + (f" ({zero:.0%} zero)" if math.isfinite(zero) and zero > 0.005 else "")

    return f"{one('fresh')} / {one('trained')}"


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| variant | (b) guidance variance slope | (b) relative-variance slope | (c) mixed variance slope "
        "| g corr. with exact (fresh / trained policy) | episodes to converge (mean; converged/seeds) | best test reward "
        "| final test reward | best − exact | final − exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["learner"] == "dgpg":
            label = f"DG-PG, {row['variant']}"
            slopes = [_slope_text(row, k) for k in ("guidance_variance_slope", "guidance_relvar_slope",
                                                    "mixed_variance_slope")]  # fmt: skip
        else:
            label = f"{row['variant']} (no guidance)"
            slopes = [f"(a) {_slope_text(row, 'shared_variance_slope')}", "–", "–"]
        lines.append(
            f"| {label} | {' | '.join(slopes)} | {_agree_text(row)} | {_conv_text(row)} | "
            f"{_pm(row['best_mean'], row['best_std'])} | {_pm(row['final_mean'], row['final_std'])} | "
            f"{_pm(row['best_diff_mean'], row['best_diff_std'])} | {_pm(row['final_diff_mean'], row['final_diff_std'])} |"
        )
    return lines


def _write_outputs(result: StressResult, settings: StressSettings) -> None:
    out = result.out
    rows = result.rows
    with (out / "stress.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    study = {k: v for k, v in asdict(settings).items() if k != "variants"}
    study["variants"] = [surrogate_dict(v) for v in settings.variants]
    command = settings.command or "(Python API: guidedmarl.studies.stress.run_stress_study)"
    # every call into this folder, oldest first: a resumed study keeps the record of the
    # calls that did the work
    calls: list[dict[str, Any]] = []
    if (out / "stress.json").is_file():
        try:
            old = json.loads((out / "stress.json").read_text())
            calls = list(old.get("calls") or [])
            if not calls and "seconds" in old:  # written before the call log existed
                before = {"command": (old.get("settings") or {}).get("command"), "finished": None}
                calls = [{**before, "seconds": old["seconds"], "executed": old.get("executed")}]
        except (json.JSONDecodeError, OSError, AttributeError, TypeError):
            calls = []
    calls.append(
        {
            "command": command,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "seconds": result.seconds,
            "executed": result.executed,
        }
    )
    doc = {
        "study": "stress test: DG-PG with deliberately imperfect analytical models",
        "settings": study,
        "rows": rows,
        "cells": [{k: v for k, v in c.items() if k != "spec"} for c in result.cells],
        "heuristics": {str(k): v for k, v in result.heuristics.items()},
        "agreement": result.agreement,
        "variance": {k: {"fits": v["fits"], "rows": v["rows"], "seconds": v.get("seconds")}
                     for k, v in result.variance.items()},  # fmt: skip
        "seconds": result.seconds,
        "executed": result.executed,
        "calls": calls,
        "machine": machine_info(),
    }
    (out / "stress.json").write_text(json.dumps(finite_or_null(doc), indent=1, default=str, allow_nan=False))

    lines = [f"cells run in this call: {result.executed['variance']} variance studies, "
              f"{result.executed['learning']} training runs (the others were reused)"]  # fmt: skip
    compute = sum(float(c["seconds"]) for c in result.cells) + sum(
        float(v.get("seconds") or 0.0) for v in result.variance.values()
    )
    lines.append(f"compute seconds of all cells (incl. reused ones): {compute:.1f}")
    if len(calls) > 1:
        lines.append("calls into this folder (oldest first):")
        for call in calls:
            done = call.get("executed") or {}
            lines.append(
                f"  {call.get('finished') or 'earlier'}: {call.get('seconds', float('nan')):.1f} s, "
                f"{done.get('variance', '?')} variance studies and {done.get('learning', '?')} training runs "
                f"executed: {str(call.get('command')).splitlines()[0]}"
            )
    write_command_file(out, command, result.seconds, lines)

    _write_markdown(result, settings, command, compute, calls)
    plot_curves(result, settings, out / "stress_curves.png")
    plot_variance(result, out / "stress_variance.png")


def _write_markdown(
    result: StressResult, settings: StressSettings, command: str, compute: float, calls: list[dict[str, Any]]
) -> None:
    domain = settings.domain
    seeds = " ".join(str(s) for s in settings.seeds)
    md = [
        f"# Stress test: DG-PG with imperfect analytical models (`{domain}`)",
        "",
        *command_block(command),
        f"* learning: N = {settings.agents}, {settings.episodes} episodes, seeds {seeds}; every setting "
        "identical except the analytical model; test reward on the held-out scenarios after each episode "
        "(greedy unless configured otherwise); mean ± sample std over seeds",
        f"* episodes to converge: `ConvergenceCriterion()` (moving average of 3, 5 % band, 90 % quality gate) on "
        f"the test-reward curve of episodes 1..{settings.episodes}, floor = `{settings.floor}`, target = "
        f"`{settings.target}` of the same seed; mean over converged seeds (count converged / seeds)",
        "* best/final − exact: paired difference to the exact model's run of the same seed (mean ± std)",
        f"* variance: `guidedmarl study variance` with the surrogate in (b) and (c), N in "
        f"{sorted(set(settings.variance_agents))}, {settings.rollouts} rollouts ({settings.scenarios} scenarios), "
        f"T = {settings.horizon or 'default'}, policy: fresh initialisation, seed {settings.variance_seed}; "
        "slope of log(quantity) vs log(N) with bootstrap 95 % interval",
        "* g corr. with exact: Pearson correlation of the surrogate's guidance weights with the exact model's on "
        f"the same sampled actions and states ({AGREEMENT_ENVS} training scenarios, N = {settings.agents}), with "
        f"the fresh policy of seed {settings.seeds[0]} and with the final policy of the exact model's run of that "
        "seed; in brackets the fraction of surrogate weights that are exactly zero",
        f"* wall-clock of this call: {result.seconds:.1f} s ({result.executed['variance']} variance studies and "
        f"{result.executed['learning']} training runs executed, the rest reused); compute of all cells: "
        f"{compute:.1f} s",
        *[
            f"* earlier call ({c.get('finished') or 'time not recorded'}): {c.get('seconds', float('nan')):.1f} s, "
            f"{(c.get('executed') or {}).get('variance', '?')} variance studies and "
            f"{(c.get('executed') or {}).get('learning', '?')} training runs executed"
            for c in calls[:-1]
        ],
        "",
        *markdown_table(result.rows),
        "",
        "Heuristics on the same test scenarios (mean ± std over seeds):",
        "",
        "| heuristic | test reward |",
        "|---|---|",
    ]
    names = sorted(next(iter(result.heuristics.values()), {}), key=lambda k: -statistics.fmean(
        result.heuristics[s][k] for s in result.heuristics))  # fmt: skip
    for hname in names:
        md.append(f"| {hname} | {_pm(*_mean_std([result.heuristics[s][hname] for s in result.heuristics]))} |")
    md += ["", "Episodes to converge and rewards per seed:", "",
           "| learner | seed | episodes to converge | best (episode) | final |", "|---|---:|---:|---|---:|"]  # fmt: skip
    for cell in result.cells:
        learner = f"DG-PG, {cell['variant']}" if cell["algo"] == "dgpg" else cell["variant"]
        k = cell.get("episodes_to_converge")
        md.append(
            f"| {learner} | {cell['seed']} | {'none' if k is None else k} | "
            f"{_num(cell['best']):.1f} ({cell['best_episode']}) | {_num(cell['final']):.1f} |"
        )
    if result.variance:
        md += [
            "",
            "Variance slopes in full (bootstrap 95 % | regression 95 %):",
            "",
            "| variant | estimator | quantity | slope | bootstrap 95 % | regression 95 % | points |",
            "|---|---|---|---:|---|---|---:|",
        ]
        for label, cell in result.variance.items():
            for est in ("shared", "guidance", "dgpg"):
                for quantity in ("variance", "relative_variance"):
                    fit = cell["fits"].get(quantity, {}).get(est) or {}
                    e = _fit_entry(fit)
                    boot, reg = interval_text(e["low"], e["high"]), interval_text(e["reg_low"], e["reg_high"])
                    slope = f"{e['slope']:.3f}" if math.isfinite(e["slope"]) else "nan"
                    md.append(f"| {label} | {est} | {quantity.replace('_', ' ')} | {slope} | {boot} | {reg} | "
                              f"{fit.get('points', 0)} |")  # fmt: skip
    md += ["", "![test reward per episode](stress_curves.png)", "", "![guidance variance vs N](stress_variance.png)", ""]
    (result.out / "stress.md").write_text("\n".join(md))


def _colours(labels: list[str]) -> dict[str, Any]:
    """One distinct colour per label, the same in both figures (tab10, or tab20 beyond 10)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(k % cmap.N) for k, label in enumerate(labels)}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def _mean_curve(cells: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    length = max(len(c["curve"]) for c in cells)
    xs, ys = [], []
    for k in range(length):
        vals = [float(c["curve"][k]) for c in cells if k < len(c["curve"]) and c["curve"][k] is not None]
        if vals:
            xs.append(k)
            ys.append(statistics.fmean(vals))
    return xs, ys


def plot_curves(result: StressResult, settings: StressSettings, path: Path) -> Path:
    """Mean test reward per episode of every variant (left: symlog, all; right: DG-PG, episodes >= 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from guidedmarl.plotting import save_figure, set_reward_scale

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in result.cells:
        groups.setdefault((cell["algo"], cell["variant"]), []).append(cell)
    heur = {
        k: statistics.fmean(result.heuristics[s][k] for s in result.heuristics)
        for k in next(iter(result.heuristics.values()), {})
    }
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1))]
    zoom: list[float] = []
    colours = _colours([label for _, label in groups])
    for k, ((algo, label), cells) in enumerate(groups.items()):
        xs, ys = _mean_curve(cells)
        name = f"DG-PG, {label}" if algo == "dgpg" else f"{label} (no guidance)"
        style = {"ls": "-" if algo == "dgpg" else "--", "marker": MARKERS[k % len(MARKERS)], "ms": 3.5,
                 "color": colours[label]}  # fmt: skip
        axes[0].plot(xs, ys, label=f"{name} ({len(cells)} seeds)", **style)
        if algo == "dgpg":
            axes[1].plot([x for x in xs if x >= 1], [y for x, y in zip(xs, ys) if x >= 1], label=name, **style)
            zoom += [y for x, y in zip(xs, ys) if x >= 1]
    ranked = sorted(heur.items(), key=lambda kv: -kv[1])
    for j, (hname, value) in enumerate(ranked):
        axes[0].axhline(value, ls=styles[j % len(styles)], color="0.35", lw=1, label=f"{hname} (heuristic)")
    if zoom:
        low, high = min(zoom), max(zoom)
        pad = 0.15 * max(high - low, 1.0)
        for j, (hname, value) in enumerate(ranked):
            if low - 3 * pad <= value <= high + 3 * pad:
                axes[1].axhline(value, ls=styles[j % len(styles)], color="0.35", lw=1, label=f"{hname} (heuristic)")
        axes[1].set_ylim(low - pad, high + pad)
    axes[0].set_xlabel("training episode (0: untrained policy)")
    axes[0].set_ylabel("mean test reward over seeds")
    set_reward_scale(axes[0])
    axes[0].set_title("all learners (symmetric-log axis)", fontsize=10)
    axes[1].set_xlabel("training episode")
    axes[1].set_title("DG-PG variants, episodes 1.. (linear axis)", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.suptitle(
        f"{settings.domain}, N = {settings.agents}: DG-PG with imperfect analytical models "
        f"(mean over seeds {', '.join(str(s) for s in settings.seeds)})",
        fontsize=11,
    )
    return save_figure(fig, path)


def plot_variance(result: StressResult, path: Path) -> Path:
    """Log-log: guidance variance, its relative variance and the mixed variance vs N, per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from guidedmarl.plotting import loglog_against_n, save_figure

    panels = (
        ("guidance", "variance", "(b) guidance: per-agent gradient variance"),
        ("guidance", "relative_variance", "(b) guidance: relative variance Var / ||E grad||^2"),
        ("dgpg", "variance", "(c) DG-PG mixed: variance (standardised weights)"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5 + 0.17 * len(result.variance)))
    colours = _colours(list(result.variance) + ["MAPPO"])  # as in the curves figure
    for ax, (est, quantity, title) in zip(axes, panels):
        values: list[float] = []
        guide = False
        if not result.variance:
            ax.axis("off")
            ax.text(0.5, 0.5, "no variance part in this study", ha="center", va="center", transform=ax.transAxes)
            continue
        for k, (label, cell) in enumerate(result.variance.items()):
            rows = [r for r in cell["rows"] if r["estimator"] == est]
            pts = [(r["N"], r[quantity]) for r in rows if r.get(quantity) is not None and r[quantity] > 0]
            if not pts:
                continue
            fit = _fit_entry(cell["fits"].get(quantity, {}).get(est))
            text = slope_label(label, fit["slope"], fit["low"], fit["high"])
            ns, ys = zip(*pts)
            ax.plot(ns, ys, marker=MARKERS[k % len(MARKERS)], color=colours[label], label=text)
            values += ys
            if not guide and len(ns) > 1:  # O(N) for comparison, through the first variant's first point
                grid = np.geomspace(min(ns), max(ns), 20)
                ax.plot(grid, ys[0] * grid / ns[0], ls=":", color="0.5", label="slope 1 (O(N)), for comparison")
                guide = True
        loglog_against_n(ax, title)
        if values:  # at least two decades, so that a flat line looks flat
            low, high = min(values), max(values)
            centre = math.sqrt(low * high)
            ax.set_ylim(min(low / 1.3, centre / 10), max(high * 1.3, centre * 10))
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    first = next(iter(result.variance.values()), {"rows": [{}]})["rows"][0]
    fig.suptitle(
        f"{first.get('domain', '?')}: gradient variance vs N with imperfect models "
        f"({first.get('rollouts', '?')} rollouts, {first.get('steps', '?')} steps, fresh policy)",
        fontsize=11,
    )
    return save_figure(fig, path)
