"""Running a grid study: every (arm, N, seed) cell is one ``run_experiment``, stored and resumable.

Cells run N by N (ascending), seed by seed, arm by arm; the heuristics of each N are
evaluated once (cached on the same store, seeded with the first study seed) and the
outputs are rewritten after each N, so an interrupted study leaves tables for the N it
finished. A cell is :func:`run_grid_cell`, a pure function of its spec (the resolved run
configuration without ``out`` and ``threads``); a stored cell whose spec differs from the
study's is an error naming the differing settings (:mod:`guidedmarl.studies.cells`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import guidedmarl.experiment as _experiment
from guidedmarl.config import RunConfig, build_config, deep_merge
from guidedmarl.domain import get_domain
from guidedmarl.studies import stats
from guidedmarl.studies.base import (
    FloorTarget,
    converged_at,
    floor_target,
    require_test_every_evaluation,
    with_estimator_setting,
)
from guidedmarl.studies.cells import CellOutcome, CellSpec, CellStore, HeuristicCache, heuristics_spec, run_cells
from guidedmarl.studies.grid.report import write_outputs
from guidedmarl.studies.grid.results import ArmSummary, CellResult, GridStudyResult
from guidedmarl.studies.grid.settings import STUDY_CONTROLLED, AlphaSettings, Arm, GridSettings, ScaleSettings

NAN = float("nan")


def _num(x: Any) -> float:
    return NAN if x is None else float(x)


def cell_config(settings: GridSettings, arm: Arm, n: int, seed: int) -> RunConfig:
    """The run configuration of one cell: the study's run settings with the cell's own on top."""
    data = deep_merge(settings.run_config, {})
    for key in STUDY_CONTROLLED:
        data.pop(key, None)
    data["domain"] = settings.domain_name
    data.update(algo=arm.algo, agents=n, episodes=arm.episodes, seed=seed, threads=settings.threads)
    data["out"] = str(settings.resolved_out() / cell_key(arm, n, seed))
    data["eval"] = require_test_every_evaluation(deep_merge(data.get("eval") or {}, {"heuristics": False}), "scale or alpha")
    if arm.alpha is not None:  # replaces the configured schedule whole (legacy `guidance.alpha` included)
        data = with_estimator_setting(data, "alpha", dict(arm.alpha))
    return build_config(data, f"settings of cell {arm.name}, N = {n}, seed {seed}")


def cell_key(arm: Arm, n: int, seed: int) -> str:
    """Folder of a cell (its run directory) inside the study folder."""
    return f"runs/{arm.name}/N{n}-s{seed}"


def cell_spec(study: str, arm: Arm, cfg: RunConfig) -> CellSpec:
    """The spec of a cell: what determines its numbers (the resolved config without out and threads)."""
    data = cfg.model_dump(mode="json")
    settings = get_domain(cfg.domain).settings_model.model_validate(cfg.domain_config)
    data["domain_config"] = settings.model_dump(mode="json")
    inputs = {k: v for k, v in data.items() if k not in ("out", "threads", "log")}
    assert cfg.agents is not None
    return CellSpec.make(study, cell_key(arm, cfg.agents, cfg.seed), arm.name, cfg.agents, cfg.seed, inputs,
                         {"threads": cfg.threads})  # fmt: skip


def run_grid_cell(spec: CellSpec, folder: Path) -> dict[str, Any]:
    """Cell function: train the cell's run into ``folder`` (its run directory); its curve and rewards.

    Calls :func:`guidedmarl.experiment.run_experiment` (looked up at call time, so that it
    can be replaced in tests).
    """
    cfg = build_config({**spec.inputs, "out": str(folder), "threads": spec.runtime.get("threads")}, "cell settings")
    res = _experiment.run_experiment(cfg, resume=True, force=True)  # an interrupted cell continues its run
    tested = [m for m in res.metrics if "eval/test_reward" in m]
    return {
        "curve_episodes": [int(m["episode"]) for m in tested],
        "curve": [float(m["eval/test_reward"]) for m in tested],
        "best": res.best_test_reward,
        "best_episode": res.best_episode,
        "final": res.final_test_reward,
        "final_other_mode": res.final_test_reward_other_mode,
        "seconds": res.seconds,
        "threads": cfg.threads,
    }


def _cell_result(outcome: CellOutcome, arm: Arm, steps_per_episode: int) -> CellResult:
    r, spec = outcome.result, outcome.spec
    assert spec.agents is not None and spec.seed is not None
    return CellResult(
        arm=arm.name, algo=arm.algo, agents=spec.agents, seed=spec.seed, episodes=arm.episodes, out=outcome.folder,
        curve_episodes=[int(e) for e in r["curve_episodes"]], curve=[_num(x) for x in r["curve"]],
        best=_num(r["best"]), best_episode=int(r["best_episode"]), final=_num(r["final"]),
        final_other_mode=_num(r.get("final_other_mode")), seconds=float(r["seconds"]),
        steps_per_episode=steps_per_episode, reused=outcome.reused,
    )  # fmt: skip


def _levels(ft: FloorTarget, rewards: dict[str, dict[str, float]]) -> tuple[float | None, float | None, str]:
    """The floor and target test rewards at one N, or why convergence is not evaluated there."""
    if not ft.defined:
        return None, None, ft.note
    floor, target = rewards[ft.floor]["mean"], rewards[ft.target]["mean"]  # type: ignore[index]
    if floor == target:
        return None, None, f"convergence not evaluated: {ft.floor} and {ft.target} score the same"
    return floor, target, ""


def run_grid_study(
    settings: GridSettings, on_progress: Callable[[str], None] | None = None, workers: Any = None
) -> GridStudyResult:
    """Run (or resume) every cell of the study and write the outputs (:mod:`guidedmarl.studies.grid`).

    The cells of one N (arms x seeds) run on ``workers`` (a backend or a number of local
    processes; default: the settings' ``backend`` and ``workers``), one N after another.
    """
    say = on_progress or (lambda msg: None)
    workers = settings.backend_spec() if workers is None else workers
    start = time.perf_counter()
    out = settings.resolved_out()
    settings = settings.model_copy(update={"out": out, "agents": settings.grid(), "domain": settings.domain_name})
    agents, arms = settings.agents, settings.arms()
    ignored = [k for k in STUDY_CONTROLLED if k in settings.run_config]
    if ignored:
        say(f"note: the study sets {', '.join(ignored)} of every cell; those settings are ignored")
    # every cell's configuration (and the domain settings) is checked before any time is spent
    configs = {(a.name, n, s): cell_config(settings, a, n, s) for n in agents for s in settings.seeds for a in arms}
    first = configs[(arms[0].name, agents[0], settings.seeds[0])]
    ft = floor_target(settings, get_domain(settings.domain_name).from_config(agents[0], first.domain_config))
    settings = settings.model_copy(update={"floor": ft.floor, "target": ft.target})
    out.mkdir(parents=True, exist_ok=True)

    store = CellStore(out)
    cache = HeuristicCache(store)
    cells: list[CellResult] = []
    heuristics: dict[int, dict[str, dict[str, float]]] = {}
    notes: dict[int, str] = {}
    counts = {"run": 0, "reused": 0}
    result: GridStudyResult | None = None
    by_name = {a.name: a for a in arms}
    for n in agents:
        probe = configs[(arms[0].name, n, settings.seeds[0])]
        domain = get_domain(probe.domain).from_config(n, probe.domain_config)
        hspec = heuristics_spec(probe.domain, n, domain.settings.model_dump(mode="json"),
                                probe.eval.test_scenarios, probe.seed, settings.threads)  # fmt: skip
        got = cache.get(hspec, say)
        heuristics[n], horizon = got.result["rewards"], int(got.result["horizon"])
        if not got.reused and heuristics[n]:
            ranked = sorted(heuristics[n].items(), key=lambda kv: -kv[1]["mean"])
            say(f"N = {n}: heuristics " + ", ".join(f"{k} {v['mean']:.2f}" for k, v in ranked)
                + f" ({got.seconds or 0.0:.1f} s)")  # fmt: skip
        floor, target, notes[n] = _levels(ft, heuristics[n])
        specs = [cell_spec(settings.study, a, configs[(a.name, n, s)]) for s in settings.seeds for a in arms]
        built: dict[str, CellResult] = {}

        def done(outcome: CellOutcome, floor: float | None = floor, target: float | None = target) -> None:
            arm = by_name[outcome.spec.name]
            cfg = configs[(arm.name, n, outcome.spec.seed)]
            cell = _cell_result(outcome, arm, cfg.envs * horizon)
            cell.converged_at = converged_at(cell.curve_episodes, cell.curve, floor, target, settings.criterion)
            built[outcome.spec.key] = cell
            counts["reused" if cell.reused else "run"] += 1
            stored = outcome.result.get("threads")
            if cell.reused and cfg.threads is not None and stored not in (None, cfg.threads):
                say(f"note: {cell.out} was run with {stored} torch threads, this study uses {cfg.threads}")
            conv = "" if floor is None else (
                f", converged at episode {cell.converged_at}" if cell.converged_at else ", not converged"
            )  # fmt: skip
            say(f"N = {n}, {arm.label}, seed {cell.seed}: best {cell.best:.2f} (episode {cell.best_episode}), "
                f"final {cell.final:.2f}{conv}, {cell.seconds:.1f} s" + (" (finished earlier, reused)" * cell.reused))

        run_cells(store, specs, run_grid_cell, workers=workers, on_outcome=done)
        cells += [built[spec.key] for spec in specs]  # seed by seed, arm by arm
        result = _result(settings, cells, arms, heuristics, notes, start, counts)
        write_outputs(result, settings)
    assert result is not None
    return result


def run_scale_study(settings: ScaleSettings, on_progress: Callable[[str], None] | None = None) -> GridStudyResult:
    """Learner presets against N (``guidedmarl study scale``)."""
    return run_grid_study(settings, on_progress)


def run_alpha_study(settings: AlphaSettings, on_progress: Callable[[str], None] | None = None) -> GridStudyResult:
    """DG-PG with constant alphas and the configured schedule (``guidedmarl study alpha``)."""
    return run_grid_study(settings, on_progress)


def summarise(cells: list[CellResult], arms: list[Arm], agents: list[int], defined: dict[int, bool]) -> list[ArmSummary]:
    """Per (N, arm): convergence counts and the mean and spread over seeds (:mod:`guidedmarl.studies.stats`)."""
    out = []
    for n in agents:
        for arm in arms:
            mine = sorted((c for c in cells if c.agents == n and c.arm == arm.name), key=lambda c: c.seed)
            if not mine:
                continue
            conv = [c.converged_at for c in mine]
            done = [k for k in conv if k is not None]
            best, final = stats.mean_spread(c.best for c in mine), stats.mean_spread(c.final for c in mine)
            secs = stats.mean_spread(c.seconds for c in mine)
            out.append(
                ArmSummary(
                    agents=n, arm=arm.name, label=arm.label, algo=arm.algo, episodes=arm.episodes, seeds=len(mine),
                    converged=len(done) if defined.get(n) else None,
                    episodes_to_converge=stats.mean(done) if done else None, per_seed_converge=conv,
                    best_mean=best[0], best_std=best[1], final_mean=final[0], final_std=final[1],
                    best_episode_mean=stats.mean(c.best_episode for c in mine),
                    seconds_mean=secs[0], seconds_std=secs[1],
                )  # fmt: skip
            )
    return out


def _result(
    settings: GridSettings,
    cells: list[CellResult],
    arms: list[Arm],
    heuristics: dict[int, dict[str, dict[str, float]]],
    notes: dict[int, str],
    start: float,
    counts: dict[str, int],
) -> GridStudyResult:
    done = sorted({c.agents for c in cells})
    defined = {n: not notes[n] for n in done}
    per_n = [f"N = {n}: {notes[n]}" for n in done if notes[n]]
    return GridStudyResult(
        out=settings.resolved_out(),
        cells=list(cells),
        summaries=summarise(cells, arms, done, defined),
        heuristics={n: {k: v["mean"] for k, v in heuristics[n].items()} for n in done},
        seconds=time.perf_counter() - start,
        cells_run=counts["run"],
        cells_reused=counts["reused"],
        convergence_note="; ".join(per_n),
        floor=settings.floor,
        target=settings.target,
    )
