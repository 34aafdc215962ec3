"""``guidedmarl study scale`` and ``guidedmarl study alpha``: options generated from the settings models."""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console
from rich.table import Table

from guidedmarl.studies.grid.results import GridStudyResult
from guidedmarl.studies.grid.settings import AlphaSettings, GridSettings, ScaleSettings
from guidedmarl.studies.options import Invocation, add_study_command, command_line
from guidedmarl.studies.reporting import plus_minus

console = Console()


def resolved(settings: GridSettings, invocation: Invocation | None = None) -> GridSettings:
    """The settings with domain, output folder, floor and target resolved, and the command line set."""
    from guidedmarl.domain import get_domain

    name = settings.domain_name
    cls = get_domain(name)
    update = {"domain": name, "out": settings.resolved_out(), "agents": settings.grid()}
    update |= {"floor": settings.floor or cls.floor_heuristic, "target": settings.target or cls.target_heuristic}
    out = settings.model_copy(update=update)
    return out.model_copy(update={"command": command_line(settings.study, out, invocation)})


def print_result(result: GridStudyResult) -> None:
    """The summary table on the console."""
    from guidedmarl.studies.grid.report import conv_text

    table = Table(title="test reward on held-out scenarios (mean ± std over seeds; higher is better)")
    for col in ("N", "algorithm", "episodes", "converged", "episodes to converge", "best", "final", "s / run"):
        table.add_column(col, justify="left" if col in ("algorithm", "episodes to converge") else "right")
    for s in result.summaries:
        conv, eps = conv_text(s)
        table.add_row(
            str(s.agents), s.label, str(s.episodes), conv, eps, plus_minus(s.best_mean, s.best_std),
            plus_minus(s.final_mean, s.final_std), plus_minus(s.seconds_mean, s.seconds_std),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"finished in {result.seconds:.1f} s ({result.cells_run} cells run, {result.cells_reused} reused); "
        f"results in [bold]{result.out}[/bold]"
    )


def run_command(settings: GridSettings, invocation: Invocation) -> None:
    """What ``study scale`` / ``study alpha`` do with validated settings."""
    from guidedmarl.studies.grid.study import run_grid_study

    settings = resolved(settings, invocation)
    arms = settings.arms()
    console.print(
        f"guidedmarl study {settings.study}: [bold]{settings.domain_name}[/bold], N in {settings.agents}, "
        f"seeds {list(settings.seeds)}, " + ", ".join(f"{a.label} {a.episodes} ep." for a in arms)
        + f" -> {settings.resolved_out()}"
    )
    result = run_grid_study(settings, on_progress=lambda m: console.print(m, markup=False, highlight=False))
    print_result(result)


def register(app: typer.Typer, fail: Callable[[BaseException, bool], typer.Exit]) -> None:
    """Add ``scale`` and ``alpha`` to ``app`` (the ``guidedmarl study`` sub-app)."""
    add_study_command(
        app, "scale", ScaleSettings, run_command, fail=fail,
        help="Learner presets against N (DG-PG, MAPPO, IPPO...): episodes to converge, test rewards, curves (resumable).",
    )  # fmt: skip
    add_study_command(
        app, "alpha", AlphaSettings, run_command, fail=fail,
        help="DG-PG with constant alpha values and the decay schedule (alpha = 0: descent term removed; resumable).",
    )  # fmt: skip
