"""``guidedmarl evaluate``, ``compare`` and ``plot``: run folders after training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from guidedmarl.commands.common import console, fail
from guidedmarl.errors import GuidedMarlError

RUN_DIRS = typer.Argument(help="run folders (each holds config.yaml)")


def register(app: typer.Typer) -> None:
    """Add ``evaluate``, ``compare`` and ``plot`` to ``app``."""

    @app.command()
    def evaluate(
        run_dir: Annotated[Path, typer.Argument(help="the run folder (it holds config.yaml)")],
        checkpoint: Annotated[str, typer.Option(help="best, final, last (the latest episode) or a .pt file")] = "best",
        scenarios: Annotated[Optional[int], typer.Option(help="how many scenarios (default: the run's test set)")] = None,
        seed: Annotated[Optional[int], typer.Option(help="draw fresh scenarios with this seed (default: the test set)")] = None,
        heuristics: Annotated[bool, typer.Option(help="score the domain's heuristics on the same scenarios")] = True,
        out: Annotated[Optional[Path], typer.Option(help="JSON file (default RUN_DIR/eval-CHECKPOINT-SCENARIOS.json)")] = None,
        device: Annotated[Optional[str], typer.Option(help="score on this device (default: the run's own)")] = None,
        debug: Annotated[bool, typer.Option(help="show the traceback of an error")] = False,
    ) -> None:
        """Score a checkpoint on the run's test scenarios, or on fresh ones (--seed); write the result as JSON."""
        from guidedmarl.runs import evaluate as score

        try:
            result = score(run_dir, checkpoint, scenarios, seed, heuristics, out, device)
        except GuidedMarlError as exc:
            raise fail(exc, debug) from None
        sc = result["scenarios"]
        where = "test scenarios" if sc["kind"] == "test" else f"fresh scenarios (seed {sc['seed']})"
        table = Table(title=f"{checkpoint} checkpoint (episode {result['checkpoint_episode']}) on {sc['count']} {where}")
        for col, justify in (("policy", "left"), ("mean", "right"), ("std", "right")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        rows = [("checkpoint (" + result["evaluation_mode"] + ")", result["policy"])]
        rows += sorted(result["heuristics"].items(), key=lambda kv: -kv[1]["mean"])
        for name, res in rows:
            table.add_row(name, f"{res['mean']:.3f}", f"{res['std']:.3f}")
        console.print(table)
        console.print(f"written to {result['written_to']}")

    @app.command()
    def compare(
        run_dirs: Annotated[list[Path], RUN_DIRS],
        group_by: Annotated[Optional[str], typer.Option(help="aggregate runs by a setting, e.g. algo (mean +- std)")] = None,
        debug: Annotated[bool, typer.Option(help="show the traceback of an error")] = False,
    ) -> None:
        """Print the table of several runs: status, best and final test reward, time."""
        from guidedmarl.compare import compare_rows
        from guidedmarl.runs import load_run

        try:
            rows = compare_rows([load_run(p) for p in run_dirs], group_by)
        except GuidedMarlError as exc:
            raise fail(exc, debug) from None
        table = Table(title="runs: test reward of the best (validation) checkpoint and of the final policy")
        for col in rows[0]:
            table.add_column(col, justify="left" if col in ("run", "algo", "status") else "right")
        for row in rows:
            table.add_row(*row.values())
        console.print(table)

    @app.command()
    def plot(
        run_dirs: Annotated[list[Path], RUN_DIRS],
        group_by: Annotated[Optional[str], typer.Option(help="one curve per value of this setting (mean +- std)")] = "algo",
        x: Annotated[str, typer.Option(help="x axis: episode or global_step (environment steps)")] = "episode",
        out: Annotated[Path, typer.Option(help="figure path; written as .png and .svg")] = Path("runs/compare.png"),
        title: Annotated[Optional[str], typer.Option(help="figure title")] = None,
        debug: Annotated[bool, typer.Option(help="show the traceback of an error")] = False,
    ) -> None:
        """Overlay runs' test-reward curves: mean and spread over seeds, heuristic lines, best checkpoints marked."""
        from guidedmarl.compare import plot_runs
        from guidedmarl.runs import load_run

        try:
            paths = plot_runs([load_run(p) for p in run_dirs], out, group_by or None, x, title)
        except GuidedMarlError as exc:
            raise fail(exc, debug) from None
        console.print("written " + ", ".join(str(p) for p in paths))
