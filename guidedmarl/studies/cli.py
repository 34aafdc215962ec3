"""``guidedmarl study ...``: the typer sub-app of the studies, mounted by :mod:`guidedmarl.cli`.

Each study registers its commands here; their options are generated from the study's
settings model (:mod:`guidedmarl.studies.options`):

* ``variance``: per-agent policy-gradient variance against N (:mod:`guidedmarl.studies.variance`);
* ``stress``: DG-PG with biased, noisy and rounded models (:mod:`guidedmarl.studies.stress`);
* ``scale`` and ``alpha``: learner presets against N, and DG-PG's alpha (:mod:`guidedmarl.studies.grid`).

Errors: a :class:`~guidedmarl.errors.ConfigError` exits with code 2, any other library
error with code 1; both print one line, ``--debug`` adds the traceback. (The helper is
:func:`fail`, the same as ``guidedmarl.cli.fail``, which cannot be imported here: that
module imports this one.)
"""

from __future__ import annotations

import typer
from rich.console import Console

from guidedmarl.errors import ConfigError
from guidedmarl.studies.grid.cli import register as register_grid
from guidedmarl.studies.stress.cli import register as register_stress
from guidedmarl.studies.variance.cli import register as register_variance

study_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Measurement studies: variance, stress, scale, alpha.")
err_console = Console(stderr=True)


def fail(exc: BaseException, debug: bool = False) -> typer.Exit:
    """Print ``exc`` on one line (plus the traceback with ``debug``); the exit to raise (2: config, 1: other)."""
    if debug:
        err_console.print_exception()
    message = " ".join(str(exc).split()) or type(exc).__name__
    err_console.print("[red]error:[/red] ", end="")
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


register_variance(study_app, fail)
register_stress(study_app, fail)
register_grid(study_app, fail)
