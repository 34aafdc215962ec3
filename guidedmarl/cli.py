"""Command line: ``guidedmarl run | resume | evaluate | compare | plot | config | check | domains | learners | study``.

Commands live by topic in :mod:`guidedmarl.commands`; ``run`` resolves settings in this
order (later wins): defaults, ``--config FILE`` (YAML or TOML), ``--set key=value``
overrides (dotted keys, values parsed as YAML), explicit flags.

Errors: a :class:`~guidedmarl.errors.ConfigError` (fix the settings) exits with code 2, any
other library error with code 1; both print one line, and ``--debug`` adds the traceback.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from guidedmarl.commands import analysis, training
from guidedmarl.commands.common import console, fail
from guidedmarl.commands.settings import config_app
from guidedmarl.config import load_settings
from guidedmarl.domain import available_domains, get_domain
from guidedmarl.errors import ConfigError, GuidedMarlError
from guidedmarl.studies.cli import study_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Descent-Guided Policy Gradient (DG-PG) runs.")
app.add_typer(study_app, name="study")
app.add_typer(config_app, name="config")
training.register(app)
analysis.register(app)
__all__ = ["app", "fail"]


def _version(value: bool) -> None:
    if value:
        from guidedmarl import __version__

        typer.echo(f"guidedmarl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Descent-Guided Policy Gradient (DG-PG) runs."""


@app.command()
def check(
    domain: Annotated[str, typer.Option(help="registered domain (`guidedmarl domains`), or module:Class, file.py:Class")],
    agents: Annotated[Optional[int], typer.Option(help="number of agents N (default: the domain's)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="domain setting, e.g. --set domain_config.horizon=5")] = None,
    steps: Annotated[int, typer.Option(min=1, help="steps of each random-policy rollout that are checked")] = 8,
    seed: Annotated[int, typer.Option(min=0, help="seed of the random actions and scenarios")] = 0,
    debug: Annotated[bool, typer.Option(help="show the traceback of an error")] = False,
) -> None:
    """Check a domain's environment, analytical model and guidance weights; exit 1 if a check fails."""
    from guidedmarl.checks import check_domain
    from guidedmarl.domain import get_domain

    try:
        data: dict[str, Any] = load_settings(None, set_)
        if set(data) - {"domain_config"} or not isinstance(data.get("domain_config", {}), dict):
            raise ConfigError(f"--set: check takes domain_config.KEY=VALUE settings only, got {sorted(data)}")
        if agents is not None and agents < 1:
            raise ConfigError(f"agents: Input should be greater than or equal to 1, got {agents}")
        built = get_domain(domain).from_config(agents, data.get("domain_config", {}))
    except ConfigError as exc:
        raise fail(exc, debug) from None
    except Exception as exc:  # noqa: BLE001 - the domain's own constructor failed
        raise fail(GuidedMarlError(f"building domain '{domain}' raised {type(exc).__name__}: {exc}"), debug) from None
    console.print(f"guidedmarl check: [bold]{domain}[/bold], N = {built.num_agents}, {steps} steps, seed {seed}")
    report = check_domain(built, steps=steps, seed=seed)
    typer.echo(report.table(width=max(console.width, 80)))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def domains() -> None:
    """List the registered and installed domains."""
    table = Table(title="guidedmarl domains")
    table.add_column("name")
    table.add_column("description")
    table.add_column("devices")
    table.add_column("default --algo")
    for name, description in available_domains().items():
        try:
            cls = get_domain(name)
            devices, algo = ", ".join(cls.devices), cls.default_algo
        except GuidedMarlError:
            devices, algo = "?", "?"
        table.add_row(name, description, devices, algo)
    console.print(table)


@app.command()
def learners() -> None:
    """List the learner presets (``--algo``) with their critic and estimator."""
    from guidedmarl.learners import PRESETS

    table = Table(title="guidedmarl learners (--algo)")
    for col in ("preset", "critic", "estimator", "description"):
        table.add_column(col)
    for name in PRESETS.names():
        p = PRESETS.get(name)
        fields = ", ".join(f"{k}={v}" for k, v in p.estimator.items() if k != "kind")
        table.add_row(name, p.critic["kind"], p.estimator["kind"] + (f" ({fields})" if fields else ""), p.description)
    console.print(table)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
