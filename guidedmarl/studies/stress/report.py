"""Outputs of the stress study: the table rows, ``stress.md``, ``stress.csv``, ``stress.json``, the
figures and ``command.txt`` (with the record of every call into the folder)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from guidedmarl.studies import stats
from guidedmarl.studies.reporting import command_block, interval_text, machine_info, plus_minus, write_command_file
from guidedmarl.studies.reporting import write_json, write_rows
from guidedmarl.studies.stress.plots import plot_curves, plot_variance
from guidedmarl.studies.stress.results import AGREEMENT_ENVS, Learner, StressResult, fit_entry, num
from guidedmarl.studies.stress.settings import GUIDED_LEARNER, StressSettings
from guidedmarl.studies.variance.settings import surrogate_dict

NAN = float("nan")


def table(
    settings: StressSettings,
    learners: list[Learner],
    cells: list[dict[str, Any]],
    variance: dict[str, dict[str, Any]],
    agreement: dict[str, dict[str, Any]],
    converge: bool,
) -> list[dict[str, Any]]:
    """One row per learner (every variant, then the reference learner): slopes, agreement, rewards."""
    labels = [learner.label for learner in learners if learner.algo == GUIDED_LEARNER]
    exact_label = "exact" if "exact" in labels else None
    by = {(c["algo"], c["variant"], c["seed"]): c for c in cells}
    rows = []
    shared = fit_entry(next(iter(variance.values()), {}).get("fits", {}).get("variance", {}).get("shared"))
    for learner in learners:
        algo, label = learner.algo, learner.label
        mine = [by[(algo, label, s)] for s in settings.seeds]
        row: dict[str, Any] = {"variant": label, "learner": algo, "surrogate": json.dumps(learner.surrogate)}
        fits = variance.get(label, {}).get("fits", {}) if algo == GUIDED_LEARNER else {}
        for est, prefix in (("guidance", "guidance"), ("dgpg", "mixed")):
            for quantity, name in (("variance", "variance"), ("relative_variance", "relvar")):
                for key, value in fit_entry(fits.get(quantity, {}).get(est)).items():
                    row[f"{prefix}_{name}_slope" + ("" if key == "slope" else f"_{key}")] = value
        for key, value in shared.items():  # (a): no model involved, the same in every variant
            row["shared_variance_slope" + ("" if key == "slope" else f"_{key}")] = value
        agree = agreement.get(label, {}) if algo == GUIDED_LEARNER else {}
        for policy in ("fresh", "trained"):
            part = agree.get(policy) or {}
            row[f"g_corr_{policy}"] = num(part.get("corr"))
            row[f"g_zero_{policy}"] = num(part.get("zero_fraction"))
        conv = [c.get("episodes_to_converge") for c in mine]
        done = [k for k in conv if k is not None]
        row["episodes_to_converge"] = ";".join("none" if k is None else str(k) for k in conv) if converge else ""
        row["converged"] = len(done) if converge else None
        row["seeds"] = len(mine)
        row["episodes_to_converge_mean"] = stats.mean(done)
        for key in ("best", "final", "final_other_mode"):
            row[f"{key}_mean"], row[f"{key}_std"] = stats.mean_spread(num(c[key]) for c in mine)
        row["best_episode_mean"] = stats.mean(float(c["best_episode"]) for c in mine)
        row["seconds_mean"] = stats.mean(float(c["seconds"]) for c in mine)
        for key in ("best", "final"):
            diffs = []
            if exact_label is not None:
                diffs = [num(c[key]) - num(by[(GUIDED_LEARNER, exact_label, c["seed"])][key]) for c in mine]
            row[f"{key}_diff_mean"], row[f"{key}_diff_std"] = stats.mean_spread(diffs)
        rows.append(row)
    return rows


def _slope_text(row: dict[str, Any], key: str) -> str:
    slope = row.get(key, NAN)
    if not math.isfinite(slope):
        return "–"
    low, high = row.get(f"{key}_low", NAN), row.get(f"{key}_high", NAN)
    if math.isfinite(low):
        return f"{slope:.2f} [{low:.2f}, {high:.2f}]"
    rl, rh = row.get(f"{key}_reg_low", NAN), row.get(f"{key}_reg_high", NAN)
    return f"{slope:.2f} (reg. [{rl:.2f}, {rh:.2f}])" if math.isfinite(rl) else f"{slope:.2f}"


def _conv_text(row: dict[str, Any]) -> str:
    if row["converged"] is None:
        return "n/a"
    mean = row["episodes_to_converge_mean"]
    head = f"{mean:.1f}" if math.isfinite(mean) else "–"
    return f"{head} ({row['converged']}/{row['seeds']})"


def _agree_text(row: dict[str, Any]) -> str:
    if row["learner"] != GUIDED_LEARNER:
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
    """The main table of ``stress.md`` (also printed by the command)."""
    lines = [
        "| variant | (b) guidance variance slope | (b) relative-variance slope | (c) mixed variance slope "
        "| g corr. with exact (fresh / trained policy) | episodes to converge (mean; converged/seeds) | best test reward "
        "| final test reward | best − exact | final − exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["learner"] == GUIDED_LEARNER:
            label = f"DG-PG, {row['variant']}"
            keys = ("guidance_variance_slope", "guidance_relvar_slope", "mixed_variance_slope")
            slopes = [_slope_text(row, k) for k in keys]
        else:
            label = f"{row['variant']} (no guidance)"
            slopes = [f"(a) {_slope_text(row, 'shared_variance_slope')}", "–", "–"]
        lines.append(
            f"| {label} | {' | '.join(slopes)} | {_agree_text(row)} | {_conv_text(row)} | "
            f"{plus_minus(row['best_mean'], row['best_std'])} | {plus_minus(row['final_mean'], row['final_std'])} | "
            f"{plus_minus(row['best_diff_mean'], row['best_diff_std'])} | "
            f"{plus_minus(row['final_diff_mean'], row['final_diff_std'])} |"
        )
    return lines


def _calls(result: StressResult, command: str) -> list[dict[str, Any]]:
    """Every call into this folder, oldest first: a resumed study keeps the record of the calls that did the work."""
    out = result.out
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
    finished = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return calls + [{"command": command, "finished": finished, "seconds": result.seconds, "executed": result.executed}]


def write_outputs(result: StressResult, settings: StressSettings) -> None:
    """Write every output file of the study into ``result.out``."""
    out = result.out
    write_rows(out / "stress.csv", result.rows)
    study = settings.model_dump(mode="json", exclude={"variants", "tolerance"})
    study["variants"] = [surrogate_dict(v) for v in settings.variants]
    command = settings.command or "(Python API: guidedmarl.studies.stress.run_stress_study)"
    calls = _calls(result, command)
    doc = {
        "study": "stress test: DG-PG with deliberately imperfect analytical models",
        "settings": study,
        "rows": result.rows,
        "cells": result.cells,
        "heuristics": {str(k): v for k, v in result.heuristics.items()},
        "agreement": result.agreement,
        "variance": {k: {"fits": v["fits"], "rows": v["rows"], "seconds": v.get("seconds")}
                     for k, v in result.variance.items()},  # fmt: skip
        "seconds": result.seconds,
        "executed": result.executed,
        "calls": calls,
        "machine": machine_info(),
    }
    write_json(out / "stress.json", doc)

    done = result.executed
    lines = [f"cells run in this call: {done['variance']} variance studies, {done['learning']} training runs "
             "(the others were reused)"]  # fmt: skip
    compute = sum(float(c["seconds"]) for c in result.cells) + sum(
        float(v.get("seconds") or 0.0) for v in result.variance.values()
    )
    lines.append(f"compute seconds of all cells (incl. reused ones): {compute:.1f}")
    if len(calls) > 1:
        lines.append("calls into this folder (oldest first):")
        for call in calls:
            got = call.get("executed") or {}
            lines.append(
                f"  {call.get('finished') or 'earlier'}: {call.get('seconds', NAN):.1f} s, "
                f"{got.get('variance', '?')} variance studies and {got.get('learning', '?')} training runs "
                f"executed: {str(call.get('command')).splitlines()[0]}"
            )
    write_command_file(out, command, result.seconds, lines)
    _write_markdown(result, settings, command, compute, calls)
    plot_curves(result, settings, out / "stress_curves.png")
    plot_variance(result, out / "stress_variance.png")


def _write_markdown(
    result: StressResult, settings: StressSettings, command: str, compute: float, calls: list[dict[str, Any]]
) -> None:
    seeds = " ".join(str(s) for s in settings.seeds)
    crit = settings.criterion
    if result.floor is not None:
        convergence = (
            f"* episodes to converge: `ConvergenceCriterion(window={crit.window}, tolerance={crit.tolerance}, "
            f"min_fraction={crit.min_fraction})` (moving average of {crit.window}, {crit.tolerance * 100:g} % band, "
            f"{crit.min_fraction * 100:g} % quality gate) on the test-reward curve of episodes 1..{settings.episodes}, "
            f"floor = `{result.floor}`, target = `{result.target}` of the same seed; mean over converged seeds "
            "(count converged / seeds)"
        )
    else:
        convergence = f"* episodes to converge: not evaluated (domain `{settings.domain_name}` names no floor and target)"
    md = [
        f"# Stress test: DG-PG with imperfect analytical models (`{settings.domain_name}`)",
        "",
        *command_block(command),
        f"* learning: N = {settings.agents}, {settings.episodes} episodes, seeds {seeds}; every setting "
        "identical except the analytical model; test reward on the held-out scenarios after each episode "
        "(greedy unless configured otherwise); mean ± sample std over seeds",
        convergence,
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
            f"* earlier call ({c.get('finished') or 'time not recorded'}): {c.get('seconds', NAN):.1f} s, "
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
    per_seed = result.heuristics
    names = sorted(next(iter(per_seed.values()), {}), key=lambda k: -stats.mean(per_seed[s][k] for s in per_seed))
    for hname in names:
        md.append(f"| {hname} | {plus_minus(*stats.mean_spread(per_seed[s][hname] for s in per_seed))} |")
    md += ["", "Episodes to converge and rewards per seed:", "",
           "| learner | seed | episodes to converge | best (episode) | final |", "|---|---:|---:|---|---:|"]  # fmt: skip
    for cell in result.cells:
        learner = f"DG-PG, {cell['variant']}" if cell["algo"] == GUIDED_LEARNER else cell["variant"]
        k = cell.get("episodes_to_converge")
        shown = "n/a" if result.floor is None else ("none" if k is None else k)
        md.append(f"| {learner} | {cell['seed']} | {shown} | {num(cell['best']):.1f} ({cell['best_episode']}) | "
                  f"{num(cell['final']):.1f} |")  # fmt: skip
    if result.variance:
        md += ["", "Variance slopes in full (bootstrap 95 % | regression 95 %):", "",
               "| variant | estimator | quantity | slope | bootstrap 95 % | regression 95 % | points |",
               "|---|---|---|---:|---|---|---:|"]  # fmt: skip
        for label, cell in result.variance.items():
            for est in ("shared", "guidance", "dgpg"):
                for quantity in ("variance", "relative_variance"):
                    fit = cell["fits"].get(quantity, {}).get(est) or {}
                    e = fit_entry(fit)
                    boot, reg = interval_text(e["low"], e["high"]), interval_text(e["reg_low"], e["reg_high"])
                    slope = f"{e['slope']:.3f}" if math.isfinite(e["slope"]) else "nan"
                    md.append(f"| {label} | {est} | {quantity.replace('_', ' ')} | {slope} | {boot} | {reg} | "
                              f"{fit.get('points', 0)} |")  # fmt: skip
    md += ["", "![test reward per episode](stress_curves.png)", "", "![guidance variance vs N](stress_variance.png)", ""]
    (result.out / "stress.md").write_text("\n".join(md))
