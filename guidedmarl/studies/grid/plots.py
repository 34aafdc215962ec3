"""Figures of a grid study: test-reward curves per N, and episodes to converge against N."""

from __future__ import annotations

from pathlib import Path

from guidedmarl.studies import stats
from guidedmarl.studies.grid.results import GridStudyResult
from guidedmarl.studies.grid.settings import GridSettings


def plot_curves(result: GridStudyResult, settings: GridSettings, n: int, path: Path) -> Path:
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
        mean = [stats.mean(col) for col in columns]
        ax.plot(episodes, mean, marker="o", ms=3, color=f"C{k}", label=f"{arm.label} (mean of {len(mine)} seeds)")
        if len(mine) > 1:
            ax.fill_between(episodes, [min(c) for c in columns], [max(c) for c in columns], color=f"C{k}", alpha=0.15)
    per = result.heuristics.get(n, {})
    for name, style in ((settings.target, "--"), (settings.floor, ":")):
        if name is not None and name in per:
            ax.axhline(per[name], ls=style, color="0.25", lw=1.2, label=f"{name} (heuristic): {per[name]:.1f}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training episode (0: untrained policy)")
    ax.set_ylabel("test reward (held-out scenarios)")
    set_reward_scale(ax)
    ax.set_title(f"{settings.domain_name}, N = {n}: test reward, min-max band over seeds")
    ax.grid(alpha=0.3)
    legend_right(ax)
    return save_figure(fig, path)


def plot_episodes_to_converge(result: GridStudyResult, settings: GridSettings, path: Path) -> Path:
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
        conv_x: list[float] = []
        conv_y: list[int] = []
        miss_x: list[float] = []
        line_x: list[float] = []
        line_y: list[float] = []
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
                line_y.append(stats.mean(got))
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
    levels = f"floor {settings.floor}, target {settings.target}" if settings.floor else "no floor and target"
    ax.set_title(f"{settings.domain_name}: episodes to converge ({levels}){note}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        legend_right(ax)
    return save_figure(fig, path)
