"""Command line: ``guidedmarl run``, ``check``, ``domains``, ``learners`` and ``study ...``.

Settings are resolved in this order (later wins): defaults, ``--config FILE`` (YAML or
TOML), ``--set key=value`` overrides (dotted keys, values parsed as YAML), explicit flags.

Errors: a :class:`~guidedmarl.errors.ConfigError` (fix the settings) exits with code 2, any
other library error with code 1; both print one line, and ``--debug`` adds the traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from guidedmarl.config import build_config, deep_merge, load_settings
from guidedmarl.domain import available_domains
from guidedmarl.errors import ConfigError, GuidedMarlError
from guidedmarl.studies.cli import study_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Descent-Guided Policy Gradient (DG-PG) runs.")
app.add_typer(study_app, name="study")
console = Console()
err_console = Console(stderr=True)


def fail(exc: BaseException, debug: bool = False) -> typer.Exit:
    """Print ``exc`` on one line (plus the traceback with ``debug``); the exit to raise.

    Exit code 2 for a configuration error, 1 for any other library error.
    """
    if debug:
        err_console.print_exception()
    message = str(exc).strip() or type(exc).__name__
    err_console.print("[red]error:[/red] ", end="")
    err_console.print(message, markup=False, highlight=False)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


def _slug(name: str) -> str:
    """A domain reference (``pkg.mod:Cls``, ``dir/file.py:Cls``) as a folder-name part."""
    return name.rsplit(":", 1)[-1] if ":" in name else name


@app.command()
def run(
    domain: Annotated[
        Optional[str], typer.Option(help="registered domain (`guidedmarl domains`), or module:Class, file.py:Class")
    ] = None,
    algo: Annotated[Optional[str], typer.Option(help="learner preset: dgpg, dgpg_exact, mappo, ippo, mfac, ...")] = None,
    agents: Annotated[Optional[int], typer.Option(help="number of agents N")] = None,
    episodes: Annotated[Optional[int], typer.Option(help="training episodes")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of every random generator")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory (default runs/DOMAIN-ALGO-nN-sSEED)")] = None,
    envs: Annotated[Optional[int], typer.Option(help="parallel training environments per episode")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch threads")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML or TOML settings file")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override, e.g. --set ppo.learning_rate=1e-3")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    plugin: Annotated[
        Optional[list[str]], typer.Option(help="import a module or .py file first (it may register estimators, ...)")
    ] = None,
    debug: Annotated[bool, typer.Option(help="show the traceback of an error")] = False,
) -> None:
    """Train one learner on one domain; write config, metrics (CSV, JSON) and a learning curve."""
    from guidedmarl.experiment import run_experiment  # torch import deferred: `--help` stays fast

    try:
        data: dict[str, Any] = load_settings(config, set_)
        flags = {"domain": domain, "algo": algo, "agents": agents, "episodes": episodes, "seed": seed}
        flags |= {"out": out, "envs": envs, "threads": threads, "plugins": plugin}
        data = deep_merge(data, {k: v for k, v in flags.items() if v is not None})
        if "out" not in data:
            cfg0 = build_config(data, "options")
            size = f"-n{cfg0.agents}" if cfg0.agents is not None else ""
            data["out"] = f"runs/{_slug(cfg0.domain)}-{cfg0.algo}{size}-s{cfg0.seed}"
        cfg = build_config(data, f"settings from {config}" if config else "options")
    except ConfigError as exc:
        raise fail(exc, debug) from None

    console.print(
        f"guidedmarl: [bold]{cfg.algo}[/bold] on [bold]{cfg.domain}[/bold], "
        f"N = {cfg.agents if cfg.agents is not None else 'domain default'}, "
        f"{cfg.episodes} episodes, seed {cfg.seed} -> {cfg.out}"
    )
    progress = Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    with progress:
        task = progress.add_task("train", total=cfg.episodes, status="")

        def on_episode(episode: int, row: dict[str, float]) -> None:
            status = f"return {row['episodic_return']:.2f}"
            if "test_reward" in row:
                status += f" | test {row['test_reward']:.2f}"
            progress.update(task, advance=1, status=status)

        try:
            result = run_experiment(cfg, on_episode=on_episode)
        except GuidedMarlError as exc:
            progress.stop()
            # a setting the domain rejects (e.g. --agents for a power case) is a usage error, as in validation
            raise fail(exc, debug) from None

    table = Table(title="test reward on held-out scenarios (higher is better)")
    table.add_column("policy")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    chosen = "validation" if cfg.eval.validation_scenarios else "test"
    table.add_row(
        f"{cfg.algo} best checkpoint (episode {result.best_episode}, chosen on {chosen})",
        f"{result.best_test_reward:.3f}",
        "",
    )
    table.add_row(f"{cfg.algo} final", f"{result.final_test_reward:.3f}", "")
    for name, res in sorted(result.baselines.items(), key=lambda kv: -kv[1].mean):
        table.add_row(name, f"{res.mean:.3f}", f"{res.std:.3f}")
    console.print(table)
    console.print(f"finished in {result.seconds:.1f} s; results in [bold]{result.out}[/bold]")
    console.print(f"  learning curve: {result.out / 'learning_curve.png'}")
    console.print(f"  metrics: {result.out / 'metrics.csv'}, summary: {result.out / 'summary.json'}")


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
    for name, description in available_domains().items():
        table.add_row(name, description)
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
