"""Figures of the stress study: test-reward curves of every learner, and guidance variance against N."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from guidedmarl.studies import stats
from guidedmarl.studies.reporting import slope_label
from guidedmarl.studies.stress.results import StressResult, fit_entry
from guidedmarl.studies.stress.settings import GUIDED_LEARNER, StressSettings


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
            ys.append(stats.mean(vals))
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
        k: stats.mean(result.heuristics[s][k] for s in result.heuristics)
        for k in next(iter(result.heuristics.values()), {})
    }
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1))]
    zoom: list[float] = []
    colours = _colours([label for _, label in groups])
    for k, ((algo, label), cells) in enumerate(groups.items()):
        xs, ys = _mean_curve(cells)
        name = f"DG-PG, {label}" if algo == GUIDED_LEARNER else f"{label} (no guidance)"
        style = {"ls": "-" if algo == GUIDED_LEARNER else "--", "marker": MARKERS[k % len(MARKERS)], "ms": 3.5,
                 "color": colours[label]}  # fmt: skip
        axes[0].plot(xs, ys, label=f"{name} ({len(cells)} seeds)", **style)
        if algo == GUIDED_LEARNER:
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
        f"{settings.domain_name}, N = {settings.agents}: DG-PG with imperfect analytical models "
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
            fit = fit_entry(cell["fits"].get(quantity, {}).get(est))
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
