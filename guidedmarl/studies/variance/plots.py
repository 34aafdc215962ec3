"""The variance study's figure: variance and relative variance against N, log-log, with fitted lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guidedmarl.studies.reporting import slope_label
from guidedmarl.studies.variance.results import COLOURS, ESTIMATORS, LABELS, VarianceStudyResult
from guidedmarl.studies.variance.settings import VarianceSettings, parse_surrogate, surrogate_label


def plot_variance(result: VarianceStudyResult, path: Path, settings: VarianceSettings) -> Path:
    """Log-log plot: variance (left) and relative variance (right) vs N, fitted lines with slopes.

    Points carry bootstrap standard errors; relative variances whose signal is not resolved
    are drawn as their 95 % lower bound (open triangles).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from guidedmarl.plotting import loglog_against_n, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.8))
    units = "team reward x N" if settings.reward_units == "sum" else "reward as returned"
    panels = (
        ("variance", "std_error", f"per-agent gradient variance ((a): {units})"),
        ("relative_variance", "relative_variance_se", "relative variance Var / ||E grad||^2 (scale-free)"),
    )
    for ax, (quantity, err, title) in zip(axes, panels):
        for est in ESTIMATORS:
            mine = [r for r in result.rows if r["estimator"] == est]
            own = [r for r in mine if np.isfinite(r[quantity]) and r[quantity] > 0]
            fit = result.fits[quantity][est]
            if own:
                ns = np.array([r["N"] for r in own], dtype=float)
                ys = np.array([r[quantity] for r in own])
                es = np.array([r[err] if np.isfinite(r[err]) else 0.0 for r in own])
                lower = np.minimum(es, ys * 0.999)  # keep error bars above zero on a log axis
                label = slope_label(LABELS[est], fit.slope, fit.boot_low, fit.boot_high)
                ax.errorbar(ns, ys, yerr=[lower, es], fmt="o", color=COLOURS[est], capsize=3, label=label)
                if np.isfinite(fit.slope):
                    grid = np.geomspace(ns.min(), ns.max(), 50)
                    ax.plot(grid, np.exp(fit.intercept) * grid**fit.slope, color=COLOURS[est], lw=1.2)
            if quantity == "relative_variance":
                bounds = [
                    r for r in mine if not np.isfinite(r[quantity]) and np.isfinite(r["relative_variance_lower95"])
                ]
                if bounds:
                    ax.plot(
                        [r["N"] for r in bounds], [r["relative_variance_lower95"] for r in bounds], "^", mfc="none",
                        ms=8, color=COLOURS[est], label=f"{LABELS[est]}: signal unresolved, 95 % lower bound",
                    )  # fmt: skip
        loglog_against_n(ax, title)
        ax.legend(fontsize=7.5)
    first = result.rows[0] if result.rows else {}
    model = f", surrogate {surrogate_label(settings.surrogate)}" if parse_surrogate(settings.surrogate) else ""
    fig.suptitle(
        f"{first.get('domain', '?')}{model}: per-agent policy-gradient variance at a fixed policy; "
        f"{settings.rollouts} rollouts ({settings.scenarios} scenarios), {first.get('steps', '?')} steps",
        fontsize=11,
    )
    return save_figure(fig, path)
