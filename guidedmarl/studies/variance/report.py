"""Outputs of the variance study: ``variance.csv``, ``variance.json``, ``variance.md``, ``variance.png``
and ``command.txt``."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from guidedmarl.studies.reporting import command_block, interval_text, machine_info, write_command_file, write_json
from guidedmarl.studies.reporting import write_rows
from guidedmarl.studies.stats import PowerLawFit
from guidedmarl.studies.variance.plots import plot_variance
from guidedmarl.studies.variance.results import LABELS, VarianceStudyResult
from guidedmarl.studies.variance.settings import VarianceSettings, surrogate_label


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "nan"
    return f"{x:.{digits}g}"


def _fit_text(fit: PowerLawFit) -> str:
    boot, reg = interval_text(fit.boot_low, fit.boot_high), interval_text(fit.ci_low, fit.ci_high)
    return f"{fit.slope:.3f} | {boot} | {reg} | {fit.points} | {fit.boot_used}"


def write_outputs(result: VarianceStudyResult, settings: VarianceSettings) -> None:
    """Write every output file of the study into ``result.out``."""
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "variance.csv", result.rows)
    doc = {
        "study": "per-agent policy-gradient variance vs N",
        "settings": settings.model_dump(mode="json"),
        "resolved": result.meta,
        "estimators": LABELS,
        "rows": result.rows,
        "fits": {q: {e: asdict(f) for e, f in per.items()} for q, per in result.fits.items()},
        "first_order_bias": result.bias,
        "seconds": result.seconds,
        "per_n_seconds": {str(k): v for k, v in result.per_n_seconds.items()},
        "machine": machine_info(),
    }
    write_json(out / "variance.json", doc)
    command = settings.command or "(Python API: guidedmarl.studies.variance.run_variance_study)"
    write_command_file(out, command, result.seconds)
    _write_markdown(result, settings, command)
    plot_variance(result, out / "variance.png", settings)


def _write_markdown(result: VarianceStudyResult, settings: VarianceSettings, command: str) -> None:
    meta = result.meta
    domain = result.rows[0]["domain"]
    units = "team reward x N (sum over agents)" if settings.reward_units == "sum" else "team reward as returned"
    policy = f"checkpoint {settings.checkpoint}" if settings.checkpoint else "fresh initialisation"
    policy += f", seed {settings.seed}"
    r, s = settings.rollouts, settings.scenarios
    model = meta.get("surrogate")
    md = [
        f"# Per-agent policy-gradient variance vs N: `{domain}`",
        "",
        *command_block(command),
        f"* policy: {policy}; alpha of (c) = {meta.get('alpha', float('nan')):.3f}",
        *([f"* analytical model of (b) and (c): surrogate {surrogate_label(model)} ({model})"] if model else []),
        f"* {r} rollouts = {s} scenarios x {r // s} replicas, {meta.get('steps')} steps each, "
        f"gamma = {meta.get('gamma')}",
        "* variance: trace of the within-scenario covariance of agent i's logit-space gradient "
        f"sum_t s_it w_it, mean over agents; std error: bootstrap over rollouts ({settings.bootstrap} resamples)",
        f"* units of (a): {units}; (b): squared guidance units (g); (c): standardised weights (unit-free)",
        "* relative variance: mean_i Var_i / mean_i ||mu_i||^2 with the debiased signal ||mean_i||^2 - Var_i / R "
        "(nan: signal not resolved at this R); rel. lower 95 %: Var / (97.5 % bootstrap percentile of the signal)",
        f"* wall-clock: {result.seconds:.1f} s",
        "",
        "| N | estimator | variance | std error | relative variance | rel. std error | rel. lower 95 % |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in result.rows:
        md.append(
            f"| {row['N']} | {LABELS[row['estimator']]} | {_fmt(row['variance'])} | {_fmt(row['std_error'], 2)} | "
            f"{_fmt(row['relative_variance'])} | {_fmt(row['relative_variance_se'], 2)} | "
            f"{_fmt(row['relative_variance_lower95'], 3)} |"
        )
    md += [
        "",
        "Fitted slopes of log(quantity) vs log(N) (least squares), with 95 % intervals: bootstrap "
        "percentile over rollouts (only resamples in which every point is resolved), and regression "
        "(t x standard error).",
        "",
        "| quantity | estimator | slope | bootstrap 95 % | regression 95 % | points | resamples used |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for quantity, per in result.fits.items():
        for est, fit in per.items():
            md.append(f"| {quantity.replace('_', ' ')} | {LABELS[est]} | {_fit_text(fit)} |")
    md.append("")
    if result.bias:
        md += _bias_lines(result.bias)
    (result.out / "variance.md").write_text("\n".join(md))


def _bias_lines(bias: list[dict[str, Any]]) -> list[str]:
    md = [
        "First-order bias: the paper's weight g_i against the exact difference D_i on the same samples, as "
        "gradients in logit space over every agent (f = sum_t s g, d = sum_t s D, both centred): ||E[f - d]|| / "
        "||E[d]|| (noise removed; 0 when below it) with its bootstrap 95 % interval, and cos(E f, E d).",
        "",
        "| N | weight of (b) | bias / gradient | bootstrap 95 % | cosine |",
        "|---:|---|---:|---|---:|",
    ]
    for row in bias:
        md.append(
            f"| {row['N']} | {row['weight_of_b']} | {_fmt(row['first_order_bias_relative'], 3)} | "
            f"{interval_text(row['first_order_bias_relative_low'], row['first_order_bias_relative_high'])} | "
            f"{_fmt(row['first_order_bias_cosine'], 4)} |"
        )
    return md + [""]


def row_lines(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """(N, estimator, variance, std error, relative variance) of each row, formatted for the console."""
    return [
        (str(r["N"]), LABELS[r["estimator"]], f"{r['variance']:.4g}", f"{r['std_error']:.2g}", f"{r['relative_variance']:.4g}")
        for r in rows
    ]
