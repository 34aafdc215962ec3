"""Running the stress study: variance cells, heuristics, learning cells and the guidance agreement.

Every cell is a pure function of its spec (:mod:`guidedmarl.studies.cells`), stored in its
own folder; a later call reuses the cells whose spec is unchanged and runs the others
again (``on_change="rerun"``), so adding a variant or changing a setting costs only the
cells it affects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from guidedmarl.analytical.surrogates import wrap_surrogate
from guidedmarl.config import RunConfig, build_config, deep_merge
from guidedmarl.domain import get_domain
from guidedmarl.experiment import build
from guidedmarl.experiment import run_experiment as run_training
from guidedmarl.guidance.weights import guidance_weights
from guidedmarl.learners import preset_label
from guidedmarl.studies.base import (
    converged_at,
    floor_target,
    require_test_every_evaluation,
    with_estimator_setting,
    without_estimator_setting,
)
from guidedmarl.studies.cells import CellOutcome, CellSpec, CellStore, HeuristicCache, heuristics_spec, run_cells
from guidedmarl.studies.stress.report import table, write_outputs
from guidedmarl.studies.stress.results import AGREEMENT_ENVS, Learner, StressResult, num
from guidedmarl.studies.stress.settings import GUIDED_LEARNER, StressSettings
from guidedmarl.studies.variance.settings import VarianceSettings, parse_surrogate, surrogate_dict, surrogate_label
from guidedmarl.studies.variance.study import run_variance_study
from guidedmarl.training.rollout import Action, StepView, rollout


def _slug(label: str) -> str:
    return label.replace(" (", "-").replace(")", "").replace(" ", "-").replace("=", "")


def _base(settings: StressSettings) -> dict[str, Any]:
    """Shared run settings, without a surrogate (each variant sets its own)."""
    data = without_estimator_setting(deep_merge(settings.run_config, {}), "surrogate")
    data["domain"] = settings.domain_name
    return data


def learning_config(settings: StressSettings, base: dict[str, Any], learner: Learner, seed: int, out: Path) -> RunConfig:
    """The run configuration of one learning cell (the variant's surrogate for the guided learner)."""
    data = deep_merge(base, {})
    data.update(algo=learner.algo, agents=settings.agents, episodes=settings.episodes, seed=seed, out=str(out))
    data["threads"] = settings.threads
    if learner.algo == GUIDED_LEARNER:
        data = with_estimator_setting(data, "surrogate", learner.surrogate)
    data["eval"] = require_test_every_evaluation({**(data.get("eval") or {}), "heuristics": False}, "stress")
    return build_config(data, "stress study settings")


def learning_spec(learner: Learner, cfg: RunConfig) -> CellSpec:
    """What determines a learning run's numbers: its configuration without folder and threads."""
    inputs = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("out", "threads", "log")}
    key = f"runs/{learner.tag}-s{cfg.seed}"
    return CellSpec.make("stress", key, learner.label, cfg.agents, cfg.seed, inputs, {"threads": cfg.threads})


def run_learning_cell(spec: CellSpec, folder: Path) -> dict[str, Any]:
    """Cell function: train one learner into ``folder``; its test-reward curve and rewards."""
    cfg = build_config({**spec.inputs, "out": str(folder), "threads": spec.runtime.get("threads")}, "cell settings")
    result = run_training(cfg, resume=True, force=True)  # an interrupted cell continues its run
    return {
        "curve": [m.get("eval/test_reward") for m in result.metrics],
        "best": result.best_test_reward,
        "best_episode": result.best_episode,
        "final": result.final_test_reward,
        "final_other_mode": result.final_test_reward_other_mode,
        "seconds": result.seconds,
    }


def variance_spec(label: str, vs: VarianceSettings, command: str) -> CellSpec:
    """What determines a variant's variance study: its settings without folder, command and threads."""
    inputs = vs.model_dump(mode="json", exclude={"out", "command", "threads"})
    runtime = {"threads": vs.threads, "command": command}
    return CellSpec.make("stress", f"variance/{_slug(label)}", label, None, vs.seed, inputs, runtime)


def run_variance_cell(spec: CellSpec, folder: Path) -> dict[str, Any]:
    """Cell function: the variance study of one variant, written into ``folder``; its fits and rows."""
    t0 = time.perf_counter()
    runtime = spec.runtime
    vs = VarianceSettings.model_validate({**spec.inputs, "out": folder, **runtime})
    run_variance_study(vs)
    doc = json.loads((folder / "variance.json").read_text())
    return {"fits": doc["fits"], "rows": doc["rows"], "seconds": time.perf_counter() - t0}


@torch.no_grad()
def guidance_agreement(
    cfg: RunConfig, variants: list[Any], steps: int, envs: int = AGREEMENT_ENVS, checkpoint: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Correlation of each surrogate's guidance weights with the exact ones, on the same data.

    The policy (fresh for ``cfg``, or the actor of ``checkpoint``) acts in ``envs``
    training scenarios for ``steps`` steps; at every step each variant's model computes g
    for the same sampled actions and state, with the trainer's weight kind and, for
    continuous actions, the policy mean.
    """
    data = cfg.model_copy(update={"envs": envs, "algo": GUIDED_LEARNER}).model_dump(mode="json")
    data["learner"]["estimator"]["surrogate"] = None
    cfg = RunConfig.model_validate(data)
    domain, trainer = build(cfg)
    if checkpoint is not None:
        trainer.actor.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["actor"])
    exact = trainer.model
    assert exact is not None
    models = {surrogate_label(v): wrap_surrogate(exact, parse_surrogate(v), cfg.seed) for v in variants}
    exact_difference = cfg.learner.estimator.weight == "exact_difference"  # type: ignore[attr-defined]
    actor = trainer.actor

    def act(step: Any) -> Action:
        dist = actor.distribution(step.obs)
        return Action(dist.sample(), mean=None if actor.discrete else dist.mean)

    def weights(view: StepView) -> dict[str, torch.Tensor]:
        mask = view.step.active
        out = {"active": mask.clone()}
        if not mask.any():  # no weight to compare: the models are not called (a noisy one would draw)
            return out | {key: torch.zeros(mask.shape, dtype=torch.float64) for key in ("exact", *models)}
        ctx, mean = view.context(), view.action.mean
        out["exact"] = guidance_weights(exact, view.actions, ctx, exact_difference, mean_action=mean).double()
        for label, model in models.items():
            out[label] = guidance_weights(model, view.actions, ctx, exact_difference, mean_action=mean).double()
        return out

    traj = rollout(trainer.env, act, domain.train_seeds(0, envs, cfg.seed), {"agreement": weights}, steps)
    active = traj.records["active"]
    return agreement({key: traj.records[key][active] for key in ("exact", *models)}, list(models))


def agreement(weights: dict[str, torch.Tensor], labels: list[str]) -> dict[str, dict[str, Any]]:
    """Pearson correlation with ``weights["exact"]`` and fraction of exact zeros of each label's weights."""
    ge = weights["exact"]
    if ge.numel() == 0:
        return {k: {"corr": float("nan"), "zero_fraction": float("nan"), "samples": 0} for k in labels}
    out = {}
    for label in labels:
        g = weights[label]
        if g.numel() > 1 and float(g.std()) > 0 and float(ge.std()) > 0:
            corr = float(torch.corrcoef(torch.stack([ge, g]))[0, 1])
        else:
            corr = float("nan")
        scale = float(ge.abs().max()) if ge.numel() else 0.0
        zero = float((g.abs() <= 1e-12 * max(scale, 1e-300)).double().mean())
        out[label] = {"corr": corr, "zero_fraction": zero, "samples": int(g.numel())}
    return out


def _learners(settings: StressSettings) -> list[Learner]:
    """The guided learner with every variant, then the reference learner."""
    out = []
    for spec, label in zip(settings.variants, settings.labels()):
        out.append(Learner(GUIDED_LEARNER, label, surrogate_dict(spec), f"{GUIDED_LEARNER}-{_slug(label)}"))
    if settings.reference is not None:
        out.append(Learner(settings.reference, preset_label(settings.reference), None, settings.reference))
    return out


def run_stress_study(
    settings: StressSettings, on_progress: Callable[[str], None] | None = None, workers: Any = None
) -> StressResult:
    """Run (or resume) every cell of the stress test and write the outputs to ``out``."""
    workers = settings.backend_spec() if workers is None else workers
    say = on_progress or (lambda msg: None)
    start = time.perf_counter()
    settings = settings.model_copy(update={"out": settings.resolved_out(), "domain": settings.domain_name})
    out, base, learners, labels = settings.resolved_out(), _base(settings), _learners(settings), settings.labels()
    store = CellStore(out)
    # every setting is checked before any time is spent
    configs = {
        (learner.tag, seed): learning_config(settings, base, learner, seed, store.root / f"runs/{learner.tag}-s{seed}")
        for seed in settings.seeds
        for learner in learners
    }
    probe = configs[(learners[0].tag, settings.seeds[0])]
    domain = get_domain(probe.domain).from_config(settings.agents, probe.domain_config)
    ft = floor_target(settings, domain)
    settings = settings.model_copy(update={"floor": ft.floor, "target": ft.target})
    variance_specs = []
    for spec, label in zip(settings.variants, labels) if settings.variance_agents else ():
        vs = settings.variance_settings(spec, out / "variance" / _slug(label), base)
        command = f"(guidedmarl study stress, variant {label}) -> {settings.command or 'Python API'}"
        variance_specs.append(variance_spec(label, vs, command))
    out.mkdir(parents=True, exist_ok=True)
    executed = {"variance": 0, "learning": 0}

    # ---- variance
    variance: dict[str, dict[str, Any]] = {}
    if settings.variance_agents:
        def started(spec: CellSpec) -> None:
            say(f"variance, {spec.name}: N in {sorted(set(settings.variance_agents))}")

        def finished(o: CellOutcome) -> None:
            if o.reused:
                say(f"variance, {o.spec.name}: done before, reused")

        for o in run_cells(store, variance_specs, run_variance_cell, workers, "rerun", say, finished, started):
            variance[o.spec.name] = {**o.result, "reused": o.reused}
            executed["variance"] += not o.reused

    # ---- heuristics (once per seed, on the learners' test scenarios) and learning
    cache = HeuristicCache(store)
    heuristics: dict[int, dict[str, float]] = {}
    for seed in settings.seeds:
        hspec = heuristics_spec(probe.domain, settings.agents, domain.settings.model_dump(mode="json"),
                                probe.eval.test_scenarios, seed, settings.threads)  # fmt: skip
        rewards = cache.get(hspec, say).result["rewards"]
        heuristics[seed] = {k: float(v["mean"]) for k, v in rewards.items()}
    by_tag = {learner.tag: learner for learner in learners}
    specs = [learning_spec(by_tag[tag], cfg) for (tag, _), cfg in configs.items()]
    tags = {spec.key: tag for spec, (tag, _) in zip(specs, configs)}

    def begin(spec: CellSpec) -> None:
        say(f"{spec.name}, seed {spec.seed}: training {spec.inputs['algo']} at N = {spec.agents}, "
            f"{settings.episodes} episodes")  # fmt: skip

    def end(o: CellOutcome) -> None:
        if o.reused:
            say(f"{o.spec.name}, seed {o.spec.seed}: done before, reused")
        else:
            say(f"  best {num(o.result['best']):.2f} (episode {o.result['best_episode']}), "
                f"final {num(o.result['final']):.2f}")  # fmt: skip

    cells: list[dict[str, Any]] = []
    for o in run_cells(store, specs, run_learning_cell, workers, "rerun", say, end, begin):
        learner, seed = by_tag[tags[o.spec.key]], int(o.spec.seed)  # type: ignore[arg-type]
        executed["learning"] += not o.reused
        record = {"algo": learner.algo, "variant": learner.label,
                  "surrogate": learner.surrogate if learner.algo == GUIDED_LEARNER else None, "seed": seed}  # fmt: skip
        record |= {**o.result, "reused": o.reused, "folder": str(o.folder)}
        levels = [heuristics[seed][h] if h else None for h in (ft.floor, ft.target)]
        curve = record["curve"]
        record["episodes_to_converge"] = converged_at(range(len(curve)), curve, *levels, settings.criterion)
        cells.append(record)

    # ---- guidance agreement (cheap, recomputed): fresh policy, and the exact model's trained policy
    agreement: dict[str, dict[str, Any]] = {}
    if any(parse_surrogate(v) is not None for v in settings.variants):
        steps = settings.horizon or 20
        fresh = guidance_agreement(probe, settings.variants, steps)
        exact_tag = next((learner.tag for learner in learners if learner.label == "exact"), None)
        trained_ckpt = store.root / f"runs/{exact_tag}-s{settings.seeds[0]}" / "final.pt"
        trained = {}
        if exact_tag is not None and trained_ckpt.is_file():
            trained = guidance_agreement(probe, settings.variants, steps, checkpoint=trained_ckpt)
        agreement = {label: {"fresh": fresh[label], "trained": trained.get(label)} for label in fresh}

    rows = table(settings, learners, cells, variance, agreement, ft.defined)
    result = StressResult(out, rows, cells, variance, heuristics, agreement, time.perf_counter() - start, executed,
                          ft.floor, ft.target)  # fmt: skip
    write_outputs(result, settings)
    return result
