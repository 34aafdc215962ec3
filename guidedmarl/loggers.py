"""Metric loggers: CSV and JSON always, TensorBoard and Weights & Biases on request.

A run logs one **row** per training episode (and a row 0 for the untrained policy). Row
keys are namespaced as in BenchMARL and CleanRL: ``train/...`` (PPO losses and the training
return), ``eval/...`` (validation and test rewards), ``guidance/...`` (the estimator's
diagnostics, e.g. ``guidance/alpha``), ``env/...`` (the domain's step diagnostics during
training) and ``time/...`` (seconds, ``time/SPS`` = environment steps per second since the
start, CleanRL's meaning, and ``time/agent_steps_per_second``). Every row also carries the
counters it is keyed by: ``episode``, ``global_step`` (environment steps so far, CleanRL's
name) and ``agent_steps``.

Every logger implements :class:`Logger`. ``start`` receives the rows already logged
(empty for a new run, the checkpoint's rows on resume), so a resumed run never logs an
episode twice.
"""

from __future__ import annotations

import csv
import io
import json
import math
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from guidedmarl.atomic import atomic_write_text
from guidedmarl.errors import ConfigError

COUNTERS = ("episode", "global_step", "agent_steps")
"""The keys a row is indexed by; every other key is a metric."""

LOGGERS = ("tensorboard", "wandb")
"""Optional loggers for ``--log`` (CSV and JSON are always written)."""


class Logger(Protocol):
    """Receives every row of a run (see the module docstring)."""

    def start(self, rows: Sequence[dict[str, float]]) -> None:
        """Called once before the first new row, with the rows logged by an earlier session."""

    def log(self, row: dict[str, float]) -> None:
        """One new row (an episode's metrics and counters)."""

    def close(self) -> None:
        """Flush and release files (also called when the run stops early)."""


LEGACY_NAMES = {
    "episodic_return": "train/episodic_return", "policy_loss": "train/policy_loss", "value_loss": "train/value_loss",
    "entropy": "train/entropy", "approx_kl": "train/approx_kl", "clipfrac": "train/clipfrac",
    "explained_variance": "train/explained_variance", "alpha": "guidance/alpha",
    "guidance_mean": "guidance/guidance_mean", "guidance_std": "guidance/guidance_std",
    "test_reward": "eval/test_reward", "test_reward_std": "eval/test_reward_std",
    "validation_reward": "eval/validation_reward", "rollout_seconds": "time/rollout_seconds",
    "guidance_seconds": "time/guidance_seconds", "update_seconds": "time/update_seconds",
    "eval_seconds": "time/eval_seconds", "SPS": "time/legacy_agent_steps_per_second_of_episode",
}  # fmt: skip
"""Metric names of run folders written before names were namespaced -> today's names."""


def upgrade_row(row: dict[str, float]) -> dict[str, float]:
    """A metrics row with legacy names (:data:`LEGACY_NAMES`, ``test_*``) renamed; today's rows pass unchanged."""
    if any("/" in k for k in row):
        return row
    out = {}
    for key, value in row.items():
        if key in LEGACY_NAMES:
            key = LEGACY_NAMES[key]
        elif key.startswith("test_"):
            key = f"eval/{key}"
        out[key] = value
    return out


def read_metrics(path: Path) -> list[dict[str, float]]:
    """``metrics.json`` of a run folder (any version), with today's metric names."""
    return [upgrade_row(r) for r in json.loads(Path(path).read_text())]


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of differing keys as CSV text: the columns are the union, in first-seen order."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class FileLogger:
    """``metrics.csv`` and ``metrics.json`` in the run folder, rewritten atomically after every row."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.rows: list[dict[str, float]] = []

    def start(self, rows: Sequence[dict[str, float]]) -> None:
        self.rows = [dict(r) for r in rows]
        if self.rows:
            self._write()

    def log(self, row: dict[str, float]) -> None:
        self.rows.append(dict(row))
        self._write()

    def _write(self) -> None:
        atomic_write_text(self.out / "metrics.json", json.dumps(self.rows, indent=1))
        atomic_write_text(self.out / "metrics.csv", csv_text(self.rows))

    def close(self) -> None:
        pass


def _scalars(row: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k not in COUNTERS and isinstance(v, (int, float))}


class TensorBoardLogger:
    """One scalar per metric, twice: under ``tensorboard/env_steps`` keyed by environment steps
    and under ``tensorboard/episodes`` keyed by episode (two runs in the TensorBoard UI).

    On resume, events a killed session wrote after its last checkpoint are purged
    (``SummaryWriter(purge_step=...)``), so no step appears twice.
    """

    def __init__(self, out: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch imports tensorboard lazily here
            raise ConfigError(
                "log: 'tensorboard' needs the tensorboard package: pip install -c constraints.txt -e '.[tensorboard]'"
            ) from exc
        self._writer_cls = SummaryWriter
        self.root = Path(out) / "tensorboard"
        self.writers: dict[str, Any] = {}

    def start(self, rows: Sequence[dict[str, float]]) -> None:
        last = rows[-1] if rows else {}
        for axis, key in (("env_steps", "global_step"), ("episodes", "episode")):
            purge = int(last[key]) + 1 if key in last else None
            self.writers[key] = self._writer_cls(log_dir=str(self.root / axis), purge_step=purge)

    def log(self, row: dict[str, float]) -> None:
        for key, writer in self.writers.items():
            step = int(row[key])
            for name, value in _scalars(row).items():
                if math.isfinite(value):
                    writer.add_scalar(name, value, global_step=step)
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class WandbLogger:
    """Weights & Biases (off by default; ``--log wandb``): one run per run folder, resumed by id.

    The W&B run id is kept in ``wandb_id.txt`` so that ``guidedmarl resume`` continues the
    same W&B run; metrics are logged with ``step = global_step``.
    """

    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise ConfigError("log: 'wandb' needs the wandb package: pip install wandb (and `wandb login`)") from exc
        self.wandb, self.out, self.config = wandb, Path(out), config
        self.run: Any = None

    def start(self, rows: Sequence[dict[str, float]]) -> None:
        id_file = self.out / "wandb_id.txt"
        # W&B accepts any id of letters and digits; a random one (not from the run seed: it names
        # the W&B run, it changes no number), kept in the folder so that a resume continues it
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        atomic_write_text(id_file, run_id)
        self.run = self.wandb.init(id=run_id, resume="allow", dir=str(self.out), config=self.config,
                                   name=self.out.name)  # fmt: skip

    def log(self, row: dict[str, float]) -> None:
        self.run.log({**_scalars(row), "episode": row["episode"]}, step=int(row["global_step"]))

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()


def make_loggers(names: Sequence[str], out: Path, config: dict[str, Any]) -> list[Logger]:
    """The file logger plus one logger per name of ``names`` (``tensorboard``, ``wandb``)."""
    loggers: list[Logger] = [FileLogger(out)]
    for name in names:
        if name == "tensorboard":
            loggers.append(TensorBoardLogger(out))
        elif name == "wandb":
            loggers.append(WandbLogger(out, config))
        else:
            raise ConfigError(f"log: unknown logger '{name}'; choose from {', '.join(LOGGERS)}")
    return loggers
