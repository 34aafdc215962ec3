"""``guidedmarl study ...``: measurement studies (a typer sub-app mounted by ``guidedmarl.cli``).

``guidedmarl study variance --domain cloud`` measures the per-agent policy-gradient
variance of the shared-return, guidance and DG-PG estimators against N and writes
``variance.csv``, ``variance.md``, ``variance.json``, ``variance.png`` and ``command.txt``
(see :mod:`guidedmarl.studies.variance` for what exactly is measured).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from guidedmarl.config import ConfigError, deep_merge, load_config_file

study_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Measurement studies (gradient variance...).")
console = Console()
err_console = Console(stderr=True)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["domain_config.horizon=5", ...]`` -> nested dict (values parsed as YAML), as ``run --set``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is already set to a value")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def parse_agents(items: list[str]) -> list[int]:
    """``["10,30", "100"]`` -> [10, 30, 100] (commas and repeated options both work)."""
    values: list[int] = []
    for item in items:
        for part in item.replace(" ", ",").split(","):
            if not part:
                continue
            try:
                values.append(int(part))
            except ValueError:
                raise ConfigError(f"--agents expects integers, got '{part}'") from None
    return values


def _command_line(params: dict[str, Any]) -> str:
    """The command as typed, plus an equivalent one with every option resolved."""
    typed = shlex.join(["guidedmarl", *sys.argv[1:]]) if sys.argv and Path(sys.argv[0]).name == "guidedmarl" else None
    parts = ["guidedmarl", "study", "variance"]
    for key, value in params.items():
        if value is None or value == [] or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, list):
            if key == "agents":
                parts += [flag, ",".join(str(v) for v in value)]
            else:
                for v in value:
                    parts += [flag, str(v)]
        elif value is True:
            parts.append(flag)
        else:
            parts += [flag, str(value)]
    resolved = shlex.join(parts)
    return resolved if typed is None or typed == resolved else f"{typed}\nresolved: {resolved}"


@study_app.command()
def variance(
    domain: Annotated[
        Optional[str], typer.Option(help="registered domain (default: from --config, else cloud)")
    ] = None,
    agents: Annotated[
        Optional[list[str]], typer.Option(help="N grid, comma-separated or repeated (default 10,30,100,300,1000,1500)")
    ] = None,
    rollouts: Annotated[int, typer.Option(help="R: rollouts per N, run as R parallel environments")] = 64,
    scenarios: Annotated[int, typer.Option(help="scenario groups; R / scenarios replicas replay each scenario")] = 4,
    horizon: Annotated[
        Optional[int], typer.Option(help="T: steps per rollout (default 20; sets the domain's `horizon` setting)")
    ] = None,
    seed: Annotated[int, typer.Option(help="run seed: policy initialisation, scenarios, sampling")] = 0,
    alpha: Annotated[
        Optional[float],
        typer.Option(help="alpha of the DG-PG estimator (default: the schedule at the policy's progress, 0.9 fresh)"),
    ] = None,
    reward_units: Annotated[
        str, typer.Option(help="sum: team reward x N (undo a per-agent normalisation); mean: reward as returned")
    ] = "sum",
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="trainer checkpoint (best.pt / final.pt of a run) to use as the fixed policy")
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="YAML or TOML run settings (ppo, guidance, domain_config)")
    ] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="override, e.g. --set domain_config.warmup=10")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for standard errors and slope intervals")] = 200,
    threads: Annotated[Optional[int], typer.Option(help="torch threads")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output directory (default runs/variance-DOMAIN)")] = None,
) -> None:
    """Per-agent policy-gradient variance vs N: shared return (a), guidance (b), DG-PG mixed (c)."""
    from guidedmarl.analytical.model import GuidanceError
    from guidedmarl.studies.variance import (
        DEFAULT_AGENTS,
        ESTIMATORS,
        LABELS,
        VarianceStudySettings,
        run_variance_study,
    )

    params = {
        "domain": domain, "agents": agents, "rollouts": rollouts, "scenarios": scenarios, "horizon": horizon,
        "seed": seed, "alpha": alpha, "reward_units": reward_units, "checkpoint": checkpoint, "config": config,
        "set": set_, "bootstrap": bootstrap, "threads": threads, "out": out,
    }  # fmt: skip
    try:
        grid = parse_agents(agents) if agents else list(DEFAULT_AGENTS)
        params["agents"] = grid
        if reward_units not in ("sum", "mean"):
            raise ConfigError(f"--reward-units must be 'sum' or 'mean', got '{reward_units}'")
        data: dict[str, Any] = load_config_file(config) if config else {}
        data = deep_merge(data, parse_overrides(set_ or []))
        name = domain or data.get("domain", "cloud")
        params["domain"] = name
        if out is None:
            out = Path(f"runs/variance-{name}")
            params["out"] = out
        settings = VarianceStudySettings(
            domain=name,
            agents=grid,
            rollouts=rollouts,
            scenarios=scenarios,
            horizon=horizon,
            seed=seed,
            alpha=alpha,
            reward_units=reward_units,  # type: ignore[arg-type]
            checkpoint=checkpoint,
            bootstrap=bootstrap,
            threads=threads,
            out=out,
            run_config=data,
            command=_command_line(params),
        )
        settings.check()
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

    console.print(
        f"guidedmarl study variance: [bold]{name}[/bold], N in {sorted(set(grid))}, {rollouts} rollouts "
        f"({scenarios} scenarios), reward units {reward_units} -> {out}"
    )
    try:
        result = run_variance_study(settings, on_progress=console.print)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except (GuidanceError, ValueError, RuntimeError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None

    table = Table(title=f"per-agent gradient variance ({name})")
    for col in ("N", "estimator", "variance", "std error", "relative variance"):
        table.add_column(col, justify="left" if col == "estimator" else "right")
    for row in result.rows:
        table.add_row(
            str(row["N"]),
            LABELS[row["estimator"]],
            f"{row['variance']:.4g}",
            f"{row['std_error']:.2g}",
            f"{row['relative_variance']:.4g}",
        )
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
