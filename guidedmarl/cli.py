"""Command line: ``guidedmarl run``, ``guidedmarl domains`` and ``guidedmarl study ...``.

Settings are resolved in this order (later wins): defaults, ``--config FILE`` (YAML or
TOML), ``--set key=value`` overrides (dotted keys, values parsed as YAML), explicit flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from guidedmarl.analytical.layers import AllocationSolverError
from guidedmarl.analytical.model import GuidanceError
from guidedmarl.config import Algo, ConfigError, build_config, deep_merge, load_settings
from guidedmarl.domain import available_domains
from guidedmarl.studies.cli import study_app
from guidedmarl.training.trainer import TrainingError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Descent-Guided Policy Gradient (DG-PG) runs.")
app.add_typer(study_app, name="study")
console = Console()
err_console = Console(stderr=True)


@app.command()
def run(
    domain: Annotated[Optional[str], typer.Option(help="registered domain (see `guidedmarl domains`)")] = None,
    algo: Annotated[Optional[str], typer.Option(help="dgpg | mappo | ippo")] = None,
    agents: Annotated[Optional[int], typer.Option(help="number of agents N")] = None,
    episodes: Annotated[Optional[int], typer.Option(help="training episodes")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of every random generator")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory (default runs/DOMAIN-ALGO-nN-sSEED)")] = None,
    envs: Annotated[Optional[int], typer.Option(help="parallel training environments per episode")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch threads")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML or TOML settings file")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override, e.g. --set ppo.learning_rate=1e-3")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Train one learner on one domain; write config, metrics (CSV, JSON) and a learning curve."""
    from guidedmarl.run import run as run_experiment  # torch import deferred: `--help` stays fast

    try:
        data: dict[str, Any] = load_settings(config, set_)
        flags = {"domain": domain, "algo": algo, "agents": agents, "episodes": episodes, "seed": seed}
        flags |= {"out": out, "envs": envs, "threads": threads}
        data = deep_merge(data, {k: v for k, v in flags.items() if v is not None})
        if "out" not in data:
            cfg0 = build_config(data, "options")
            size = f"-n{cfg0.agents}" if cfg0.agents is not None else ""
            data["out"] = f"runs/{cfg0.domain}-{cfg0.algo}{size}-s{cfg0.seed}"
        cfg = build_config(data, f"settings from {config}" if config else "options")
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

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
        except (ConfigError, GuidanceError, TrainingError, AllocationSolverError, ValueError) as exc:
            progress.stop()
            err_console.print(f"[red]error:[/red] {exc}")
            # a setting the domain rejects (e.g. --agents for a power case) is a usage error, as in validation
            raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from None

    table = Table(title="test reward on held-out scenarios (higher is better)")
    table.add_column("policy")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    table.add_row(f"{cfg.algo} best checkpoint (episode {result.best_episode})", f"{result.best_test_reward:.3f}", "")
    table.add_row(f"{cfg.algo} final", f"{result.final_test_reward:.3f}", "")
    for name, res in sorted(result.baselines.items(), key=lambda kv: -kv[1].mean):
        table.add_row(name, f"{res.mean:.3f}", f"{res.std:.3f}")
    console.print(table)
    console.print(f"finished in {result.seconds:.1f} s; results in [bold]{result.out}[/bold]")
    console.print(f"  learning curve: {result.out / 'learning_curve.png'}")
    console.print(f"  metrics: {result.out / 'metrics.csv'}, summary: {result.out / 'summary.json'}")


@app.command()
def domains() -> None:
    """List the registered and installed domains."""
    table = Table(title="guidedmarl domains")
    table.add_column("name")
    table.add_column("description")
    for name, description in available_domains().items():
        table.add_row(name, description)
    console.print(table)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
