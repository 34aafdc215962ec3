"""Learning-curve figures (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def set_reward_scale(ax: plt.Axes) -> None:
    """Symmetric-log y axis when rewards span orders of magnitude (linear near zero)."""
    low, high = ax.get_ylim()
    near, far = sorted((abs(low), abs(high)))
    if low < 0 and far > 20 * max(near, 1.0):
        ax.set_yscale("symlog", linthresh=max(1.0, near))


def legend_right(ax: plt.Axes) -> None:
    """Small legend outside the axes, on the right, vertically centred."""
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def loglog_against_n(ax: plt.Axes, title: str) -> None:
    """Log-log axes with the x axis "number of agents N", a small title and a grid at every tick."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of agents N")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")


def save_figure(fig: plt.Figure, path: Path, dpi: int = 120) -> Path:
    """Lay out, write ``path`` and close the figure (frees its memory); returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_learning_curve(
    metrics: list[dict[str, float]],
    baselines: dict[str, float],
    path: Path,
    title: str,
    test_points: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Test reward (and training return) against episode, heuristics as horizontal lines.

    ``test_points``: labelled (episode, test reward) markers, for runs that play the test
    scenarios only for some policies (``eval.test = "chosen"``).
    """
    fig, ax = plt.subplots(figsize=(9, 4.2))
    trained = [m for m in metrics if "train/episodic_return" in m]
    ax.plot(
        [m["episode"] for m in trained],
        [m["train/episodic_return"] for m in trained],
        color="0.6",
        lw=1,
        label="train episodic return",
    )
    evaluated = (
        ("eval/test_reward", "test reward (held-out scenarios)", {"marker": "o", "ms": 3, "color": "tab:blue"}),
        ("eval/validation_reward", "validation reward (checkpoint selection)", {"ls": "--", "lw": 1, "color": "tab:cyan"}),
    )
    for key, label, style in evaluated:
        rows = [m for m in metrics if key in m]
        if rows:
            ax.plot([m["episode"] for m in rows], [m[key] for m in rows], label=label, **style)  # type: ignore[arg-type]
    for k, (label, (episode, reward)) in enumerate((test_points or {}).items()):
        ax.plot([episode], [reward], ls="none", marker="*" if k == 0 else "D", ms=11, mec="k", mew=0.5,
                color=("tab:blue", "tab:orange")[k % 2], label=label)  # fmt: skip
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1))]
    for k, (name, value) in enumerate(sorted(baselines.items(), key=lambda kv: -kv[1])):
        ax.axhline(value, ls=styles[k % len(styles)], color=f"C{k + 1}", lw=1.2, label=f"{name} (heuristic)")
    ax.set_xlabel("training episode (0: untrained policy)")
    ax.set_ylabel("episodic team reward")
    set_reward_scale(ax)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    legend_right(ax)
    return save_figure(fig, path)
