"""``guidedmarl study ...``: measurement studies (a typer sub-app mounted by ``guidedmarl.cli``).

``guidedmarl study variance --domain cloud`` measures the per-agent policy-gradient
variance of the shared-return, guidance and DG-PG estimators against N and writes
``variance.csv``, ``variance.md``, ``variance.json``, ``variance.png`` and ``command.txt``
(see :mod:`guidedmarl.studies.variance` for what exactly is measured); ``--surrogate``
puts a deliberately imperfect model into the guidance.

``guidedmarl study stress --domain cloud`` is the referee's stress test: variance slopes
and DG-PG learning with biased, noisy and rounded surrogate models against the exact one
and MAPPO; resumable (see :mod:`guidedmarl.studies.stress`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from guidedmarl.config import ConfigError, load_settings
from guidedmarl.config import parse_overrides as parse_overrides  # re-exported: ``--set`` parsing
from guidedmarl.studies.common import command_line, exit_on_error, parse_ints, study_target

study_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Measurement studies: variance, stress, scale, alpha.")
console = Console()


def parse_agents(items: list[str]) -> list[int]:
    """``["10,30", "100"]`` -> [10, 30, 100] (commas and repeated options both work)."""
    return parse_ints(items, "--agents")


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
    surrogate: Annotated[
        Optional[str],
        typer.Option(
            help="imperfect model for (b) and (c): biased:beta=0.3[,direction=uniform], noisy:sigma=0.3, "
            "rounded:step=0.1, exact, or JSON (default: the exact model, or guidance.surrogate of --config/--set)"
        ),
    ] = None,
) -> None:
    """Per-agent policy-gradient variance vs N: shared return (a), guidance (b), DG-PG mixed (c)."""
    from guidedmarl.analytical.model import GuidanceError
    from guidedmarl.studies.variance import (
        DEFAULT_AGENTS,
        ESTIMATORS,
        LABELS,
        VarianceStudySettings,
        parse_surrogate,
        run_variance_study,
        surrogate_label,
    )

    params = {
        "domain": domain, "agents": agents, "rollouts": rollouts, "scenarios": scenarios, "horizon": horizon,
        "seed": seed, "alpha": alpha, "reward_units": reward_units, "checkpoint": checkpoint, "config": config,
        "set": set_, "bootstrap": bootstrap, "threads": threads, "out": out, "surrogate": surrogate,
    }  # fmt: skip
    try:
        parse_surrogate(surrogate)
        grid = parse_agents(agents) if agents else list(DEFAULT_AGENTS)
        params["agents"] = grid
        if reward_units not in ("sum", "mean"):
            raise ConfigError(f"--reward-units must be 'sum' or 'mean', got '{reward_units}'")
        data = load_settings(config, set_)
        name, out = study_target("variance", domain, data, out)
        params["domain"], params["out"] = name, out
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
            command=command_line("variance", params, joined=("agents",)),
            surrogate=surrogate,
        )
        settings.check()
    except ConfigError as exc:
        exit_on_error(exc, 2)

    model = f", surrogate model {surrogate_label(surrogate)}" if parse_surrogate(surrogate) is not None else ""
    console.print(
        f"guidedmarl study variance: [bold]{name}[/bold], N in {sorted(set(grid))}, {rollouts} rollouts "
        f"({scenarios} scenarios), reward units {reward_units}{model} -> {out}"
    )
    try:
        result = run_variance_study(settings, on_progress=console.print)
    except ConfigError as exc:
        exit_on_error(exc, 2)
    except (GuidanceError, ValueError, RuntimeError) as exc:
        exit_on_error(exc, 1)

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


def parse_variants(items: list[str]) -> list[str]:
    """``--variant`` values; each may also hold several specs separated by ``;``."""
    return [part.strip() for item in items for part in item.split(";") if part.strip()]


@study_app.command()
def stress(
    domain: Annotated[
        Optional[str], typer.Option(help="registered domain (default: from --config, else cloud)")
    ] = None,
    variant: Annotated[
        Optional[list[str]],
        typer.Option(
            "--variant",
            help="model variant, repeatable: exact, biased:beta=0.3[,direction=uniform], noisy:sigma=0.3, "
            "rounded:step=0.1, or JSON (default: exact; biased beta 0.1, 0.3, 1; noisy sigma 0.3, 1; "
            "rounded step 0.1, 0.5)",
        ),
    ] = None,
    agents: Annotated[int, typer.Option(help="N of the learning runs")] = 50,
    episodes: Annotated[int, typer.Option(help="training episodes per run")] = 10,
    seeds: Annotated[
        Optional[list[str]], typer.Option(help="seeds of the learning runs, comma-separated or repeated (default 0,1,2)")
    ] = None,
    reference: Annotated[
        str, typer.Option(help="no-guidance reference learner: mappo, ippo or none")
    ] = "mappo",
    floor: Annotated[str, typer.Option(help="heuristic used as the floor of the convergence criterion")] = "random",
    target: Annotated[str, typer.Option(help="heuristic used as the target of the convergence criterion")] = "best_fit",
    variance_agents: Annotated[
        Optional[list[str]],
        typer.Option(help="N grid of the variance part, comma-separated (default 10,100,1000; 0: no variance part)"),
    ] = None,
    rollouts: Annotated[int, typer.Option(help="variance part: rollouts per N")] = 64,
    scenarios: Annotated[int, typer.Option(help="variance part: scenario groups")] = 4,
    horizon: Annotated[Optional[int], typer.Option(help="variance part: steps per rollout (default 20)")] = None,
    bootstrap: Annotated[int, typer.Option(help="variance part: bootstrap resamples")] = 200,
    variance_seed: Annotated[int, typer.Option(help="variance part: seed of the fixed fresh policy")] = 0,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="YAML or TOML run settings shared by every run")
    ] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="override, e.g. --set domain_config.warmup=10")
    ] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch threads of every run")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output directory (default runs/stress-DOMAIN)")] = None,
) -> None:
    """Stress test: variance slopes and learning of DG-PG with biased, noisy or rounded models (resumable)."""
    from guidedmarl.analytical.model import GuidanceError
    from guidedmarl.studies.stress import DEFAULT_SEEDS, DEFAULT_VARIANCE_AGENTS, DEFAULT_VARIANTS, StressSettings
    from guidedmarl.studies.stress import markdown_table, run_stress_study

    params = {
        "domain": domain, "variant": variant, "agents": agents, "episodes": episodes, "seeds": seeds,
        "reference": reference, "floor": floor, "target": target, "variance_agents": variance_agents,
        "rollouts": rollouts, "scenarios": scenarios, "horizon": horizon, "bootstrap": bootstrap,
        "variance_seed": variance_seed, "config": config, "set": set_, "threads": threads, "out": out,
    }  # fmt: skip
    try:
        variants = parse_variants(variant) if variant else list(DEFAULT_VARIANTS)
        params["variant"] = variants
        seed_list = _parse_ints(seeds, "--seeds") if seeds else list(DEFAULT_SEEDS)
        params["seeds"] = seed_list
        grid = _parse_ints(variance_agents, "--variance-agents") if variance_agents else list(DEFAULT_VARIANCE_AGENTS)
        grid = [n for n in grid if n != 0]
        params["variance_agents"] = grid or [0]
        data = load_settings(config, set_)
        name, out = study_target("stress", domain, data, out)
        params["domain"], params["out"] = name, out
        settings = StressSettings(
            domain=name,
            variants=variants,
            agents=agents,
            episodes=episodes,
            seeds=seed_list,
            reference=None if reference.lower() == "none" else reference.lower(),
            floor=floor,
            target=target,
            variance_agents=grid,
            rollouts=rollouts,
            scenarios=scenarios,
            horizon=horizon,
            bootstrap=bootstrap,
            variance_seed=variance_seed,
            threads=threads,
            out=out,
            run_config=data,
            command=command_line("stress", params, joined=("seeds", "variance_agents")),
        )
        settings.check()
    except ConfigError as exc:
        exit_on_error(exc, 2)

    console.print(
        f"guidedmarl study stress: [bold]{name}[/bold], {len(variants)} variants, learning at N = {agents} "
        f"({episodes} episodes, seeds {seed_list}), variance at N in {grid} -> {out}",
        markup=True,
        highlight=False,
    )
    try:
        result = run_stress_study(settings, on_progress=lambda msg: console.print(msg, markup=False, highlight=False))
    except ConfigError as exc:
        exit_on_error(exc, 2)
    except (GuidanceError, ValueError, RuntimeError) as exc:  # training and solver errors are RuntimeErrors
        exit_on_error(exc, 1)

    for line in markdown_table(result.rows):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"finished in {result.seconds:.1f} s ({result.executed['variance']} variance studies and "
        f"{result.executed['learning']} training runs executed, the rest reused); results in [bold]{result.out}[/bold]"
    )


def _parse_ints(items: list[str], flag: str) -> list[int]:
    """Integers of the list option ``flag``; the error names the option and every value given."""
    try:
        return parse_ints(items, flag)
    except ConfigError:
        raise ConfigError(f"{flag} expects integers, got {items}") from None


def fail(exc: BaseException, debug: bool = False) -> typer.Exit:
    """Print ``exc`` on one line (plus the traceback with ``debug``); the exit to raise (2: config, 1: other).

    The same as ``guidedmarl.cli.fail``, which cannot be imported here: that module imports this one.
    """
    err = Console(stderr=True)
    if debug:
        err.print_exception()
    message = " ".join(str(exc).split()) or type(exc).__name__
    err.print("[red]error:[/red] ", end="")
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


# `study scale` and `study alpha`: the package guidedmarl.studies.grid, options from its settings models
from guidedmarl.studies.grid.cli import register as _register_grid  # noqa: E402

_register_grid(study_app, fail)
