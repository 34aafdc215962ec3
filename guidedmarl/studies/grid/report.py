"""Outputs of a grid study: ``STUDY.md``, ``STUDY.csv``, ``runs.csv``, ``STUDY.json``, the plots,
``marl_eval.json`` and ``command.txt`` (file by file in ``docs/scale_study.md``)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from typing import Any

from guidedmarl.studies import stats
from guidedmarl.studies.grid.plots import plot_curves, plot_episodes_to_converge
from guidedmarl.studies.grid.results import ArmSummary, GridStudyResult
from guidedmarl.studies.grid.settings import Arm, GridSettings
from guidedmarl.studies.marl_eval import MarlEvalFormatError, RunCurve, build_marl_eval
from guidedmarl.studies.reporting import command_block, machine_info, plus_minus, write_command_file, write_json


def conv_text(s: ArmSummary) -> tuple[str, str]:
    """The "converged" and "episodes to converge" cells of a summary row."""
    if s.converged is None:
        return "n/a", "n/a"
    per = ", ".join("–" if k is None else str(k) for k in s.per_seed_converge)
    mean = f"{s.episodes_to_converge:.1f}" if s.episodes_to_converge is not None else "–"
    return f"{s.converged}/{s.seeds}", f"{mean} [{per}]"


def heuristic_order(result: GridStudyResult) -> list[str]:
    """Heuristic names, best mean test reward over N first."""
    names: dict[str, list[float]] = {}
    for per in result.heuristics.values():
        for k, v in per.items():
            names.setdefault(k, []).append(v)
    return sorted(names, key=lambda k: -stats.mean(names[k]))


def settings_record(settings: GridSettings) -> dict[str, Any]:
    """The settings as written to ``STUDY.json`` (with the study's name and title)."""
    data = settings.model_dump(mode="json", exclude={"tolerance"})
    return {**data, "study": settings.study, "title": settings.title}


def write_outputs(result: GridStudyResult, settings: GridSettings) -> None:
    """Write table, CSVs, JSON, plots, marl-eval export and command.txt into ``result.out``."""
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    arms = settings.arms()
    study = settings.study
    command = settings.command or f"(Python API: guidedmarl.studies.grid.run_{study}_study)"

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

    floor_target = {n: (per.get(settings.floor or ""), per.get(settings.target or "")) for n, per in result.heuristics.items()}
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
            for name in heuristic_order(result):
                if name in per:
                    writer.writerow(
                        [n, "heuristic", name, name, "", "", "", "", "", "", per[name], "", per[name], "", "", "", "",
                         floor_target[n][0], floor_target[n][1]]
                    )  # fmt: skip

    _write_markdown(result, settings, arms, command)
    doc = {
        "study": study,
        "title": settings.title,
        "settings": settings_record(settings),
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
    write_json(out / f"{study}.json", doc)

    # marl-eval export (common evaluation steps: marl-eval needs equal step counts)
    curves = [
        RunCurve(f"N{c.agents}", c.arm, f"run_{c.seed}", [e * c.steps_per_episode for e in c.curve_episodes], c.curve,
                 c.best)  # fmt: skip
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


def _eval_every(settings: GridSettings) -> int:
    return int((settings.run_config.get("eval") or {}).get("every", 1))


def _differ_in(arms: list[Arm]) -> str:
    parts = ["the algorithm"] * (len({a.algo for a in arms}) > 1)
    parts += ["the episode budget"] * (len({a.episodes for a in arms}) > 1)
    parts += ["alpha"] * any(a.alpha is not None for a in arms)
    return " and ".join(parts)


def _write_markdown(result: GridStudyResult, settings: GridSettings, arms: list[Arm], command: str) -> None:
    crit = settings.criterion
    budget = ", ".join(f"{a.label} {a.episodes}" for a in arms)
    if settings.floor is not None:
        levels = f"floor = `{settings.floor}`, target = `{settings.target}` at the same N"
    else:
        levels = "no floor and target heuristics, so not evaluated"
    md = [
        f"# {settings.title}: `{settings.domain_name}`",
        "",
        *command_block(command),
        f"* grid: N in {sorted(result.heuristics)}, seeds {list(settings.seeds)}; training episodes: {budget}",
        "* every cell is one `guidedmarl run` with the same networks, PPO settings, training and test scenarios; "
        "the arms differ only in " + _differ_in(arms),
        "* test reward: mean episodic team reward over the held-out test scenarios after each training episode; "
        "mean ± sample std over seeds; *best checkpoint*: the checkpoint with the best reward on the validation "
        "scenarios (seeded apart from training and test; the test set when `eval.validation_scenarios = 0`), "
        "reported on the test scenarios",
        f"* convergence: `ConvergenceCriterion(window={crit.window}, tolerance={crit.tolerance}, "
        f"min_fraction={crit.min_fraction})` on the test-reward curve (episodes 1...), {levels}; episodes to "
        "converge: mean over converged seeds [per seed, – = not converged]",
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
        "| N | algorithm | episodes | converged | episodes to converge | best-checkpoint (validation) test reward "
        "| final test reward | best episode | wall-clock per run (s) |",
        "|---:|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for s in result.summaries:
        conv, eps = conv_text(s)
        md.append(
            f"| {s.agents} | {s.label} | {s.episodes} | {conv} | {eps} | {plus_minus(s.best_mean, s.best_std)} | "
            f"{plus_minus(s.final_mean, s.final_std)} | {s.best_episode_mean:.1f} | "
            f"{plus_minus(s.seconds_mean, s.seconds_std)} |"
        )
    names = heuristic_order(result)
    if names:
        seed = settings.seeds[0]
        md += [
            "",
            f"Heuristics on the same test scenarios (test reward; randomised rules seeded with the first study seed, {seed}):",
            "",
            "| N | " + " | ".join(names) + " |",
            "|---:|" + "---:|" * len(names),
        ]
        for n, per in sorted(result.heuristics.items()):
            md.append(f"| {n} | " + " | ".join(f"{per[k]:.1f}" if k in per else "–" for k in names) + " |")
    md.append("")
    (result.out / f"{settings.study}.md").write_text("\n".join(md))
