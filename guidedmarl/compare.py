"""Several runs side by side: a table (:func:`compare_rows`) and an overlay of learning curves (:func:`plot_runs`).

Runs are grouped by a setting (``algo`` by default; any dotted key of the resolved config,
e.g. ``agents`` or ``learner.estimator.kind``): a group's curve is the mean test reward over
its runs (seeds) at each evaluated episode, with a band of +- one standard deviation where
it has two runs or more. Heuristic lines are drawn when every run shares the domain, N and
domain settings (so their heuristics scored the same scenarios); each run's best checkpoint
(chosen on validation) is a star.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guidedmarl.errors import ConfigError
from guidedmarl.plotting import legend_right, plt, save_figure, set_reward_scale
from guidedmarl.runs import Run

X_AXES = {"episode": "training episode", "global_step": "environment steps"}


def setting(run: Run, key: str) -> Any:
    """The value of the dotted config key ``key`` in ``run`` (``ConfigError`` naming the key if absent)."""
    node: Any = run.config.model_dump(mode="json")
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"group_by: '{key}' is not a setting of the run {run.path} (e.g. algo, agents, seed)")
        node = node[part]
    return node


def group_runs(runs: Sequence[Run], group_by: str | None) -> dict[str, list[Run]]:
    """Runs by the value of ``group_by`` (each run alone, named by its folder, when None), in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        name = str(setting(run, group_by)) if group_by else run.path.name
        groups.setdefault(name, []).append(run)
    return groups


def _spread(values: list[float]) -> str:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return "-"
    if len(finite) == 1:
        return f"{finite[0]:.3f}"
    return f"{statistics.fmean(finite):.3f}±{statistics.stdev(finite):.3f}"


def compare_rows(runs: Sequence[Run], group_by: str | None = None) -> list[dict[str, str]]:
    """One table row per run (or per group, mean +- std over its runs).

    Columns: ``done`` episodes done of planned, ``best`` the test reward of the checkpoint
    chosen on validation (``at``: its episode), ``final`` the final policy's.
    """
    rows = []
    for name, members in group_runs(runs, group_by).items():
        s = [r.summary for r in members]
        first = members[0].config
        done = [str(x.get("episodes_done", "?")) for x in s]
        rows.append({
            "run": name,
            "N": ",".join(sorted({str(x.get("agents", r.config.agents)) for x, r in zip(s, members)})),
            "seeds": ",".join(str(r.config.seed) for r in members),
            "status": ",".join(sorted({str(r.status) for r in members})),
            "done": "/".join(sorted(set(done))) + f"/{first.episodes}",
            "best": _spread([x.get("best_test_reward", math.nan) for x in s]),
            "at": ",".join(str(x.get("best_episode", "-")) for x in s),
            "final": _spread([x.get("final_test_reward", math.nan) for x in s]),
        })  # fmt: skip
    return rows


def _curve(run: Run, x: str) -> dict[float, float]:
    return {float(m[x]): float(m["eval/test_reward"]) for m in run.metrics if "eval/test_reward" in m and x in m}


def shared_heuristics(runs: Sequence[Run]) -> dict[str, float]:
    """The heuristics' mean test reward when every run has the same domain, N and domain settings; else ``{}``."""
    keys = {(r.config.domain, r.summary.get("agents"), repr(r.config.domain_config), r.config.eval.test_scenarios)
            for r in runs}  # fmt: skip
    if len(keys) != 1 or not runs[0].summary.get("baselines"):
        return {}
    from guidedmarl.domain import get_domain

    try:
        shown = get_domain(runs[0].config.domain).plot_baselines
    except ConfigError:
        shown = ()
    baselines = runs[0].summary["baselines"]
    return {k: float(v) for k, v in baselines.items() if not shown or k in shown}


def plot_runs(runs: Sequence[Run], path: Path, group_by: str | None = "algo", x: str = "episode",
              title: str | None = None) -> list[Path]:  # fmt: skip
    """Overlay the test-reward curves of ``runs`` grouped by ``group_by``; writes ``path`` as PNG and SVG."""
    if not runs:
        raise ConfigError("runs: give at least one run folder")
    if x not in X_AXES:
        raise ConfigError(f"x: must be one of {', '.join(X_AXES)}, got '{x}'")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for k, (name, members) in enumerate(group_runs(runs, group_by).items()):
        color = f"C{k}"
        curves = [_curve(r, x) for r in members]
        xs = sorted(set().union(*curves))
        means, lows, highs = [], [], []
        for at in xs:
            ys = [c[at] for c in curves if at in c]
            mean = statistics.fmean(ys)
            sd = statistics.stdev(ys) if len(ys) > 1 else 0.0
            means.append(mean), lows.append(mean - sd), highs.append(mean + sd)
        label = f"{name} ({len(members)} run{'s' * (len(members) > 1)})"
        ax.plot(xs, means, color=color, marker="o", ms=2.5, lw=1.5, label=label)
        if len(members) > 1:
            ax.fill_between(xs, lows, highs, color=color, alpha=0.2, lw=0)
        for r in members:
            best = r.summary.get("best_episode")
            if isinstance(best, int) and best >= 0:
                row = next((m for m in r.metrics if int(m["episode"]) == best), None)
                if row is not None and "eval/test_reward" in row and x in row:
                    ax.plot([row[x]], [row["eval/test_reward"]], marker="*", ms=11, color=color, mec="k", mew=0.5,
                            ls="none")  # fmt: skip
    ax.plot([], [], marker="*", ms=11, color="0.7", mec="k", mew=0.5, ls="none", label="best checkpoint (validation)")
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1))]
    for k, (name, value) in enumerate(sorted(shared_heuristics(runs).items(), key=lambda kv: -kv[1])):
        ax.axhline(value, ls=styles[k % len(styles)], color="0.35", lw=1.0, label=f"{name} (heuristic)")
    ax.set_xlabel(X_AXES[x])
    ax.set_ylabel("test reward (held-out scenarios)")
    set_reward_scale(ax)
    ax.set_title(title or f"test reward, mean ± std over runs, grouped by {group_by or 'run'}", fontsize=10)
    ax.grid(alpha=0.3)
    legend_right(ax)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    svg = path.with_suffix(".svg")
    fig.tight_layout()
    with plt.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG (searchable, editable)
        fig.savefig(svg)
    return [save_figure(fig, path.with_suffix(".png")), svg]
