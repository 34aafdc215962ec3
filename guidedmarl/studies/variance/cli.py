"""``guidedmarl study variance``: options generated from :class:`VarianceSettings`."""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console
from rich.table import Table

from guidedmarl.studies.base import require_domain
from guidedmarl.studies.options import Invocation, add_study_command, command_line
from guidedmarl.studies.variance.results import ESTIMATORS, LABELS
from guidedmarl.studies.variance.settings import VarianceSettings, parse_surrogate, surrogate_label, surrogate_text

console = Console()
FORMATTERS = {"surrogate": surrogate_text}


def run_command(settings: VarianceSettings, invocation: Invocation) -> None:
    """What ``study variance`` does with validated settings."""
    from guidedmarl.studies.variance.report import row_lines
    from guidedmarl.studies.variance.study import base_config, run_variance_study

    name = require_domain(settings.domain or base_config(settings).get("domain"))
    settings = settings.model_copy(update={"domain": name, "agents": settings.grid()})
    settings = settings.model_copy(update={"out": settings.resolved_out()})
    settings = settings.model_copy(update={"command": command_line("variance", settings, invocation, FORMATTERS)})
    model = f", surrogate model {surrogate_label(settings.surrogate)}" if parse_surrogate(settings.surrogate) else ""
    console.print(
        f"guidedmarl study variance: [bold]{name}[/bold], N in {settings.agents}, {settings.rollouts} rollouts "
        f"({settings.scenarios} scenarios), reward units {settings.reward_units}{model} -> {settings.out}"
    )
    result = run_variance_study(settings, on_progress=console.print)
    table = Table(title=f"per-agent gradient variance ({name})")
    for col in ("N", "estimator", "variance", "std error", "relative variance"):
        table.add_column(col, justify="left" if col == "estimator" else "right")
    for line in row_lines(result.rows):
        table.add_row(*line)
    console.print(table)
    for quantity, per in result.fits.items():
        for est in ESTIMATORS:
            fit = per[est]
            console.print(
                f"slope of {quantity.replace('_', ' ')}, {LABELS[est]}: {fit.slope:.3f} "
                f"(bootstrap 95% [{fit.boot_low:.2f}, {fit.boot_high:.2f}], "
                f"regression [{fit.ci_low:.2f}, {fit.ci_high:.2f}])",
                markup=False,
                highlight=False,
            )
    console.print(f"finished in {result.seconds:.1f} s; results in [bold]{result.out}[/bold]")


def register(app: typer.Typer, fail: Callable[[BaseException, bool], typer.Exit]) -> None:
    """Add ``variance`` to ``app`` (the ``guidedmarl study`` sub-app)."""
    add_study_command(
        app, "variance", VarianceSettings, run_command, fail=fail,
        help="Per-agent policy-gradient variance vs N: shared return (a), guidance (b), DG-PG mixed (c).",
    )  # fmt: skip
