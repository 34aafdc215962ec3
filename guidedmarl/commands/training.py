"""``guidedmarl run`` and ``guidedmarl resume``: train one learner on one domain, or continue a stopped run.

Settings are resolved in this order (later wins): defaults, ``--config FILE`` (YAML or
TOML), ``--set key=value`` overrides (dotted keys, values parsed as YAML), explicit flags.

Ctrl-C (SIGINT) and SIGTERM stop a run after writing what it has: the folder is marked
``interrupted`` and ``guidedmarl resume DIR`` continues it from its last complete episode
(exit code 130). A ``kill -9`` leaves the folder ``running`` with a dead process, which
``resume`` continues just the same.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from guidedmarl.commands.common import console, err_console, fail
from guidedmarl.config import RunConfig, build_config, deep_merge, load_settings
from guidedmarl.errors import ConfigError, GuidedMarlError

INTERRUPTED_EXIT = 130


def _slug(name: str) -> str:
    """A domain reference (``pkg.mod:Cls``, ``dir/file.py:Cls``) as a folder-name part."""
    return name.rsplit(":", 1)[-1] if ":" in name else name


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does (schedulers stop jobs with it)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def train(cfg: RunConfig, resume: bool, force: bool, quiet: bool, debug: bool) -> None:
    """Run (or resume) ``cfg`` with a progress bar, then print the table of test rewards."""
    from guidedmarl.experiment import check_device, run_experiment  # torch import deferred: `--help` stays fast
    from guidedmarl.rundir import prepare_out, read_summary

    try:
        check_device(cfg)
        prepare_out(cfg.out, resume, force)  # refuse before any work starts
        done = (read_summary(cfg.out) or {}).get("episodes_done", 0) if resume else 0
    except GuidedMarlError as exc:
        raise fail(exc, debug) from None
    if resume and (read_summary(cfg.out) or {}).get("status") == "finished":
        console.print(f"{cfg.out} holds a finished run: nothing to resume; its results:")
    verb = f"resuming after episode {done} of" if resume else "training"
    console.print(
        f"guidedmarl: [bold]{cfg.algo}[/bold] on [bold]{cfg.domain}[/bold], "
        f"N = {cfg.agents if cfg.agents is not None else 'domain default'}, {verb} "
        f"{cfg.episodes if cfg.env_steps is None else cfg.env_steps} "
        f"{'episodes' if cfg.env_steps is None else 'environment steps'}, seed {cfg.seed} -> {cfg.out}"
    )
    bar = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                   TimeElapsedColumn(), console=console, disable=quiet)  # fmt: skip
    last = {"episode": done}
    with bar:
        # with an environment-step budget the episode count is known once the domain is built
        task = bar.add_task("train", total=cfg.episodes if cfg.env_steps is None else None, completed=done, status="")

        def on_episode(episode: int, row: dict[str, float]) -> None:
            last["episode"] = episode + 1
            status = f"return {row['train/episodic_return']:.2f}"
            if "eval/test_reward" in row:
                status += f" | test {row['eval/test_reward']:.2f}"
            elif "eval/validation_reward" in row:
                status += f" | validation {row['eval/validation_reward']:.2f}"
            bar.update(task, completed=episode + 1, status=status)

        try:
            with sigterm_as_interrupt():
                result = run_experiment(cfg, on_episode=on_episode, resume=resume, force=force)
        except KeyboardInterrupt:
            bar.stop()
            err_console.print(f"interrupted after episode {last['episode']} of {cfg.episodes}; the folder is resumable: "
                              f"guidedmarl resume {cfg.out}", soft_wrap=True)  # fmt: skip
            raise typer.Exit(INTERRUPTED_EXIT) from None
        except GuidedMarlError as exc:
            bar.stop()
            # a setting the domain rejects (e.g. --agents for a power case) is a usage error, as in validation
            raise fail(exc, debug) from None

    table = Table(title="test reward on held-out scenarios (higher is better)")
    for col, justify in (("policy", "left"), ("mean", "right"), ("std", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    chosen = "validation" if cfg.eval.validation_scenarios else "test"
    table.add_row(f"{cfg.algo} best checkpoint (episode {result.best_episode}, chosen on {chosen})",
                  f"{result.best_test_reward:.3f}", "")  # fmt: skip
    table.add_row(f"{cfg.algo} final", f"{result.final_test_reward:.3f}", "")
    for name, res in sorted(result.baselines.items(), key=lambda kv: -kv[1].mean):
        table.add_row(name, f"{res.mean:.3f}", f"{res.std:.3f}")
    console.print(table)
    console.print(f"finished in {result.seconds:.1f} s; results in [bold]{result.out}[/bold]")
    console.print(f"  learning curve: {result.out / 'learning_curve.png'}")
    console.print(f"  metrics: {result.out / 'metrics.csv'}, summary: {result.out / 'summary.json'}")


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``resume`` to ``app``."""

    @app.command()
    def run(
        domain: Annotated[
            Optional[str], typer.Option(help="registered domain (`guidedmarl domains`), or module:Class, file.py:Class")
        ] = None,
        algo: Annotated[Optional[str], typer.Option(help="learner preset: dgpg, dgpg_exact, mappo, ippo, mfac, ...")] = None,
        agents: Annotated[Optional[int], typer.Option(help="number of agents N")] = None,
        episodes: Annotated[Optional[int], typer.Option(help="training episodes")] = None,
        env_steps: Annotated[
            Optional[int], typer.Option(help="training budget in environment steps (instead of --episodes)")
        ] = None,
        seed: Annotated[Optional[int], typer.Option(help="seed of every random generator")] = None,
        out: Annotated[Optional[Path], typer.Option(help="run directory (default runs/DOMAIN-ALGO-nN-sSEED)")] = None,
        envs: Annotated[Optional[int], typer.Option(help="parallel training environments per episode")] = None,
        threads: Annotated[Optional[int], typer.Option(help="torch threads (default 1, see `threads` in config show)")] = None,
        device: Annotated[Optional[str], typer.Option(help="cpu (default), cuda or cuda:K: where the run's tensors live")] = None,
        config: Annotated[Optional[Path], typer.Option("--config", help="YAML or TOML settings file")] = None,
        set_: Annotated[Optional[list[str]], typer.Option("--set", help="override, e.g. --set ppo.learning_rate=1e-3")] = None,
        log: Annotated[Optional[list[str]], typer.Option(help="extra logger: tensorboard, wandb (repeatable)")] = None,
        force: Annotated[bool, typer.Option(help="overwrite a run already in the run directory")] = False,
        quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
        plugin: Annotated[
            Optional[list[str]], typer.Option(help="import a module or .py file first (it may register estimators, ...)")
        ] = None,
        debug: Annotated[bool, typer.Option(help="show the traceback of an error")] = False,
    ) -> None:
        """Train one learner on one domain; write config, metrics (CSV, JSON), checkpoints and a learning curve."""
        try:
            data: dict[str, Any] = load_settings(config, set_)
            flags = {"domain": domain, "algo": algo, "agents": agents, "episodes": episodes, "seed": seed,
                     "env_steps": env_steps}  # fmt: skip
            flags |= {"out": out, "envs": envs, "threads": threads, "device": device, "plugins": plugin, "log": log}
            data = deep_merge(data, {k: v for k, v in flags.items() if v is not None})
            if "out" not in data:
                cfg0 = build_config(data, "options")
                size = f"-n{cfg0.agents}" if cfg0.agents is not None else ""
                data["out"] = f"runs/{_slug(cfg0.domain)}-{cfg0.algo}{size}-s{cfg0.seed}"
            cfg = build_config(data, f"settings from {config}" if config else "options")
        except ConfigError as exc:
            raise fail(exc, debug) from None
        train(cfg, resume=False, force=force, quiet=quiet, debug=debug)

    @app.command()
    def resume(
        run_dir: Annotated[Path, typer.Argument(help="the run folder of a stopped run (it holds config.yaml)")],
        log: Annotated[Optional[list[str]], typer.Option(help="extra logger: tensorboard, wandb (repeatable)")] = None,
        quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
        debug: Annotated[bool, typer.Option(help="show the traceback of an error")] = False,
    ) -> None:
        """Continue a stopped run from its last complete episode; it ends as an uninterrupted run would."""
        file = run_dir / "config.yaml"
        try:
            if not file.is_file():
                raise ConfigError(f"run_dir: {run_dir} is not a run folder (it has no config.yaml)")
            data = yaml.safe_load(file.read_text()) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"{file} must hold a mapping of settings")
            data["out"] = str(run_dir)
            if log is not None:
                data["log"] = log
            cfg = build_config(data, f"settings from {file}")
        except (ConfigError, yaml.YAMLError) as exc:
            raise fail(exc if isinstance(exc, ConfigError) else ConfigError(f"cannot parse {file}: {exc}"), debug) from None
        train(cfg, resume=True, force=False, quiet=quiet, debug=debug)
