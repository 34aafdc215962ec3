"""Checkpoints of a run: what ``guidedmarl resume`` continues from, and the weights ``evaluate`` scores.

Two kinds of file, both written atomically (:mod:`guidedmarl.atomic`) and both loaded with
``torch.load(weights_only=True)`` (no pickled code runs when a file is opened):

* a **resume checkpoint** (``checkpoint.pt``, rewritten after every complete episode):
  the trainer (actor, critic, value normaliser, optimiser, episode counter), the state of
  every random generator (:mod:`guidedmarl.training.rng`), the run loop's progress (metrics
  so far, best checkpoint so far, step counters, heuristic baselines) and the resolved
  configuration it belongs to;
* a **weights checkpoint** (``best.pt``, ``final.pt``): ``Trainer.state_dict()`` alone.

A file that is missing, truncated, not a torch file, or of another kind or configuration
raises :class:`~guidedmarl.errors.CheckpointError` saying which.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from guidedmarl.atomic import atomic_torch_save
from guidedmarl.errors import CheckpointError

FORMAT = "guidedmarl-resume"
VERSION = 1
TRAINER_KEYS = ("actor", "critic", "value_norm", "optimizer", "episode")


def read_torch_file(path: Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` as a dict; :class:`CheckpointError` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read: it is truncated, corrupt, or not a torch file saved with plain "
            f"tensors ({first})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a guidedmarl checkpoint (a dict)")
    return data


def trainer_state(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ``Trainer.state_dict()`` inside a weights or resume checkpoint read from ``path``."""
    state = data.get("trainer", data) if data.get("format") == FORMAT else data
    missing = [k for k in TRAINER_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is not a guidedmarl trainer checkpoint: it lacks {', '.join(missing)} "
            f"(it has {', '.join(sorted(map(str, state))[:8]) or 'nothing'})"
        )
    return state


def save_resume(path: Path, trainer_state_dict: dict[str, Any], rng: dict[str, Any], loop: dict[str, Any],
                config: dict[str, Any]) -> Path:  # fmt: skip
    """Write a resume checkpoint atomically; returns ``path``."""
    record = {"format": FORMAT, "version": VERSION, "trainer": trainer_state_dict, "rng": rng, "loop": loop,
              "config": config}  # fmt: skip
    return atomic_torch_save(path, record)


def load_resume(path: Path) -> dict[str, Any]:
    """A resume checkpoint (``trainer``, ``rng``, ``loop``, ``config``); :class:`CheckpointError` if it is not one."""
    data = read_torch_file(path)
    if data.get("format") != FORMAT:
        kind = "a weights checkpoint (best.pt / final.pt), which cannot be resumed" if "actor" in data else "not one"
        raise CheckpointError(f"{path} is not a guidedmarl resume checkpoint: {kind}")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} is a resume checkpoint of format version {data.get('version')}; "
                              f"this guidedmarl reads version {VERSION}")  # fmt: skip
    for key in ("trainer", "rng", "loop", "config"):
        if key not in data:
            raise CheckpointError(f"resume checkpoint {path} is incomplete: it has no '{key}'")
    trainer_state(data, path)
    return data


def load_into(trainer: Any, state: dict[str, Any], path: Path) -> None:
    """``trainer.load_state_dict(state)``; a :class:`CheckpointError` when shapes or keys do not match."""
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit this run's trainer (another N, network, learner or domain?): {first}"
        ) from None
