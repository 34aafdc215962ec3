"""``guidedmarl study scale`` and ``guidedmarl study alpha``: the commands of :mod:`guidedmarl.studies.scale`.

Mounted by :func:`register` (``register(study_app)`` adds both commands to the ``study``
sub-app). List options take commas, repeats or several values after one flag:
``--agents 5,20,50``, ``--seeds 0 1``, ``--seeds 0 --seeds 1`` are all accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

from guidedmarl.config import ConfigError, load_settings
from guidedmarl.convergence import ConvergenceCriterion
from guidedmarl.studies.common import command_line, exit_on_error, parse_floats, parse_ints, split_list, study_target

console = Console()

LIST_OPTIONS = ("--agents", "--algos", "--seeds", "--alphas")
JOINED = tuple(flag[2:] for flag in LIST_OPTIONS)
"""Parameters written comma-separated in the resolved command line (``--set`` is repeated)."""

# Options shared by ``study scale`` and ``study alpha`` (defaults are given at each use).
DomainOption = Annotated[Optional[str], typer.Option(help="registered domain (default: from --config, else cloud)")]
SeedsOption = Annotated[Optional[list[str]], typer.Option(help="run seeds, e.g. 0 1 2 (default 0,1,2)")]
FloorOption = Annotated[str, typer.Option(help="heuristic used as the convergence floor")]
TargetOption = Annotated[str, typer.Option(help="heuristic used as the convergence target")]
ToleranceOption = Annotated[float, typer.Option(help="convergence band, a fraction of the floor-to-target range")]
ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", help="YAML or TOML run settings (ppo, guidance, eval...)")
]
SetOption = Annotated[
    Optional[list[str]], typer.Option("--set", help="override for every cell, e.g. --set ppo.entropy_coef=0")
]
ThreadsOption = Annotated[int, typer.Option(help="torch threads per run (runs are sequential)")]


class _ListOptionsCommand(TyperCommand):
    """Lets a list option take several values after one flag: ``--seeds 0 1`` = ``--seeds 0 --seeds 1``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        current: str | None = None
        for arg in args:
            if arg in LIST_OPTIONS:
                current = arg
                rewritten.append(arg)
                continue
            if current is not None and not arg.startswith("-") and rewritten[-1] != current:
                rewritten += [current, arg]
                continue
            if arg.startswith("-"):
                current = None
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


def _criterion(tolerance: float) -> ConvergenceCriterion:
    try:
        return ConvergenceCriterion(tolerance=tolerance)
    except ValueError as exc:
        raise ConfigError(f"tolerance: {exc}") from exc


def _print_result(result: Any) -> None:
    table = Table(title="test reward on held-out scenarios (mean ± std over seeds; higher is better)")
    for col in ("N", "algorithm", "episodes", "converged", "episodes to converge", "best", "final", "s / run"):
        table.add_column(col, justify="left" if col in ("algorithm", "episodes to converge") else "right")
    from guidedmarl.studies.scale import _conv_text, _spread

    for s in result.summaries:
        conv, eps = _conv_text(s)
        table.add_row(
            str(s.agents), s.label, str(s.episodes), conv, eps, _spread(s.best_mean, s.best_std),
            _spread(s.final_mean, s.final_std), _spread(s.seconds_mean, s.seconds_std),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"finished in {result.seconds:.1f} s ({result.cells_run} cells run, {result.cells_reused} reused); "
        f"results in [bold]{result.out}[/bold]"
    )


def _execute(study: str, settings: Any) -> None:
    from guidedmarl.analytical.layers import AllocationSolverError
    from guidedmarl.analytical.model import GuidanceError
    from guidedmarl.studies.scale import run_grid_study
    from guidedmarl.training.trainer import TrainingError

    try:
        settings.check()
    except ConfigError as exc:
        exit_on_error(exc, 2)
    arms = settings.arms()
    console.print(
        f"guidedmarl study {study}: [bold]{settings.domain_name}[/bold], N in {sorted(set(settings.agents))}, "
        f"seeds {list(settings.seeds)}, " + ", ".join(f"{a.label} {a.episodes} ep." for a in arms)
        + f" -> {settings.resolved_out()}"
    )
    try:
        result = run_grid_study(settings, on_progress=lambda m: console.print(m, markup=False, highlight=False))
    except ConfigError as exc:
        exit_on_error(exc, 2)
    except (GuidanceError, TrainingError, AllocationSolverError, ValueError, RuntimeError) as exc:
        exit_on_error(exc, 1)
    _print_result(result)


def register(study_app: typer.Typer) -> None:
    """Add the commands ``scale`` and ``alpha`` to ``study_app`` (the ``guidedmarl study`` sub-app)."""

    @study_app.command(cls=_ListOptionsCommand)
    def scale(
        domain: DomainOption = None,
        agents: Annotated[
            Optional[list[str]],
            typer.Option(help="N grid, e.g. 5,20,50 (default 5,10,20,50,100,200,500,1000,1500)"),
        ] = None,
        algos: Annotated[
            Optional[list[str]], typer.Option(help="learners, e.g. dgpg,mappo (default dgpg,mappo,ippo)")
        ] = None,
        seeds: SeedsOption = None,
        episodes: Annotated[int, typer.Option(help="DG-PG's training episodes")] = 10,
        baseline_budget: Annotated[
            float, typer.Option(help="MAPPO and IPPO train round(episodes x this) episodes")
        ] = 2.5,
        floor: FloorOption = "random",
        target: TargetOption = "best_fit",
        tolerance: ToleranceOption = ConvergenceCriterion.tolerance,
        config: ConfigOption = None,
        set_: SetOption = None,
        threads: ThreadsOption = 1,
        out: Annotated[Optional[Path], typer.Option(help="results folder (default runs/scale-DOMAIN)")] = None,
    ) -> None:
        """DG-PG against MAPPO and IPPO over N: episodes to converge, test rewards, curves (resumable)."""
        from guidedmarl.studies.scale import DEFAULT_AGENTS, DEFAULT_ALGOS, DEFAULT_SEEDS, ScaleStudySettings

        try:
            grid = parse_ints(agents, "--agents") if agents else list(DEFAULT_AGENTS)
            seed_list = parse_ints(seeds, "--seeds") if seeds else list(DEFAULT_SEEDS)
            algo_list = split_list(algos) if algos else list(DEFAULT_ALGOS)
            data = load_settings(config, set_)
            name, folder = study_target("scale", domain, data, out)
            params = {
                "domain": name, "agents": grid, "algos": algo_list, "seeds": seed_list, "episodes": episodes,
                "baseline_budget": baseline_budget, "floor": floor, "target": target, "tolerance": tolerance, "config": config,
                "set": set_, "threads": threads, "out": folder,
            }  # fmt: skip
            settings = ScaleStudySettings(
                domain=name, agents=grid, seeds=seed_list, episodes=episodes, run_config=data, threads=threads,
                floor=floor, target=target, out=folder, command=command_line("scale", params, JOINED), algos=algo_list,
                baseline_budget=baseline_budget, criterion=_criterion(tolerance),
            )  # fmt: skip
        except ConfigError as exc:
            exit_on_error(exc, 2)
        _execute("scale", settings)

    @study_app.command(cls=_ListOptionsCommand)
    def alpha(
        domain: DomainOption = None,
        agents: Annotated[Optional[list[str]], typer.Option(help="N grid (default 50)")] = None,
        alphas: Annotated[
            Optional[list[str]], typer.Option(help="constant alphas (default 0,0.2,0.4,0.6,0.8; 0 = no descent term)")
        ] = None,
        decay: Annotated[
            bool, typer.Option(help="also run the configured schedule (default: linear 0.9 -> 0.2)")
        ] = True,
        seeds: SeedsOption = None,
        episodes: Annotated[int, typer.Option(help="training episodes")] = 10,
        floor: FloorOption = "random",
        target: TargetOption = "best_fit",
        tolerance: ToleranceOption = ConvergenceCriterion.tolerance,
        config: ConfigOption = None,
        set_: SetOption = None,
        threads: ThreadsOption = 1,
        out: Annotated[Optional[Path], typer.Option(help="results folder (default runs/alpha-DOMAIN)")] = None,
    ) -> None:
        """DG-PG with constant alpha values and the decay schedule (alpha = 0: descent term removed)."""
        from guidedmarl.studies.scale import DEFAULT_ALPHAS, DEFAULT_SEEDS, AlphaStudySettings

        try:
            grid = parse_ints(agents, "--agents") if agents else [50]
            seed_list = parse_ints(seeds, "--seeds") if seeds else list(DEFAULT_SEEDS)
            alpha_list = parse_floats(alphas, "--alphas") if alphas else list(DEFAULT_ALPHAS)
            data = load_settings(config, set_)
            name, folder = study_target("alpha", domain, data, out)
            params = {
                "domain": name, "agents": grid, "alphas": alpha_list, "decay": decay, "seeds": seed_list,
                "episodes": episodes, "floor": floor, "target": target, "tolerance": tolerance, "config": config, "set": set_,
                "threads": threads, "out": folder,
            }  # fmt: skip
            settings = AlphaStudySettings(
                domain=name, agents=grid, seeds=seed_list, episodes=episodes, run_config=data, threads=threads,
                floor=floor, target=target, out=folder, command=command_line("alpha", params, JOINED), alphas=alpha_list,
                decay=decay, criterion=_criterion(tolerance),
            )  # fmt: skip
        except ConfigError as exc:
            exit_on_error(exc, 2)
        _execute("alpha", settings)
