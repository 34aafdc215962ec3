"""``guidedmarl study stress``: options generated from :class:`StressSettings`."""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console

from guidedmarl.studies.options import Invocation, add_study_command, command_line
from guidedmarl.studies.stress.settings import StressSettings

console = Console()


def resolved(settings: StressSettings, invocation: Invocation | None = None) -> StressSettings:
    """The settings with domain, output folder, floor and target resolved, and the command line set."""
    from guidedmarl.domain import get_domain

    name = settings.domain_name
    cls = get_domain(name)
    update = {"domain": name, "out": settings.resolved_out()}
    update |= {"floor": settings.floor or cls.floor_heuristic, "target": settings.target or cls.target_heuristic}
    out = settings.model_copy(update=update)
    return out.model_copy(update={"command": command_line("stress", out, invocation)})


def run_command(settings: StressSettings, invocation: Invocation) -> None:
    """What ``study stress`` does with validated settings."""
    from guidedmarl.studies.stress.report import markdown_table
    from guidedmarl.studies.stress.study import run_stress_study

    settings = resolved(settings, invocation)
    console.print(
        f"guidedmarl study stress: [bold]{settings.domain_name}[/bold], {len(settings.variants)} variants, learning "
        f"at N = {settings.agents} ({settings.episodes} episodes, seeds {settings.seeds}), variance at N in "
        f"{settings.variance_agents} -> {settings.out}",
        highlight=False,
    )
    result = run_stress_study(settings, on_progress=lambda msg: console.print(msg, markup=False, highlight=False))
    for line in markdown_table(result.rows):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"finished in {result.seconds:.1f} s ({result.executed['variance']} variance studies and "
        f"{result.executed['learning']} training runs executed, the rest reused); results in [bold]{result.out}[/bold]"
    )


def register(app: typer.Typer, fail: Callable[[BaseException, bool], typer.Exit]) -> None:
    """Add ``stress`` to ``app`` (the ``guidedmarl study`` sub-app)."""
    add_study_command(
        app, "stress", StressSettings, run_command, fail=fail,
        help="Stress test: variance slopes and learning of DG-PG with biased, noisy or rounded models (resumable).",
    )  # fmt: skip
