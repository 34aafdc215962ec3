"""The run folder: its files, its status, where it came from, and whether it may be written.

``summary.json`` always holds ``status``:

* ``running``: a process is training into the folder (``pid`` and ``host`` say which); a
  run killed with ``kill -9`` stays ``running``, and :func:`run_status` reports it as
  ``interrupted`` once that process is gone;
* ``interrupted``: stopped by Ctrl-C or SIGTERM after its last complete episode;
* ``failed``: stopped by an error (``error`` holds the message);
* ``finished``: complete, with the full summary.

Anything but ``finished`` is continued by ``guidedmarl resume DIR`` from ``checkpoint.pt``.
``provenance.json`` records, for each session that trained into the folder (the first run
and every resume), the package version, the git commit where the package is a git checkout,
the thread count, the device, and the versions of Python and the main libraries.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from guidedmarl.atomic import atomic_write_json
from guidedmarl.errors import CheckpointError, ConfigError

SUMMARY, CONFIG, CHECKPOINT, PROVENANCE = "summary.json", "config.yaml", "checkpoint.pt", "provenance.json"
RUN_FILES = (SUMMARY, CHECKPOINT, "best.pt", "final.pt", "metrics.csv", "metrics.json", "baselines.json",
             "learning_curve.png", PROVENANCE, "wandb_id.txt")  # fmt: skip
RUN_FOLDERS = ("tensorboard",)
LIBRARIES = ("torch", "numpy", "scipy", "cvxpy", "cvxpylayers", "pydantic", "gymnasium", "pettingzoo", "matplotlib")


def read_summary(out: Path) -> dict[str, Any] | None:
    """``summary.json`` of ``out`` (None if there is none); :class:`CheckpointError` if unreadable."""
    path = Path(out) / SUMMARY
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a run summary (a JSON object)")
    return data


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_status(out: Path) -> str | None:
    """The run's status (see the module docstring), None for a folder without a run.

    A ``running`` summary whose process no longer exists on this host reads ``interrupted``;
    a folder with a checkpoint but no summary (killed in its first moments) too.
    """
    summary = read_summary(out)
    if summary is None:
        return "interrupted" if (Path(out) / CHECKPOINT).is_file() else None
    status = str(summary.get("status", "finished"))  # folders written before statuses existed were finished
    if status == "running" and summary.get("host") == socket.gethostname():
        pid = summary.get("pid")
        if not isinstance(pid, int) or not _process_alive(pid) or pid == os.getpid():
            return "interrupted"
    return status


def prepare_out(out: Path, resume: bool, force: bool) -> None:
    """Check that the run may write into ``out``; with ``force`` (and no resume) clear the old run's files.

    Raises :class:`ConfigError` (before any work starts) when ``out`` is a file, lies under a
    file, or is not writable; or when it holds a run and neither ``resume`` nor ``force`` is
    given (a finished run is never overwritten by accident, e.g. by re-running its own
    ``config.yaml``). A run that failed or stopped before its first training episode is
    simply started over.
    """
    out = Path(out)
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"out: {out} cannot be a run folder: {parent} is a file")
        if parent.exists():
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"out: {parent} is not writable; choose another --out")
            break
    status = run_status(out) if out.is_dir() else None
    if status in ("failed", "interrupted") and not resume and (read_summary(out) or {}).get("episodes_done", 0) == 0:
        force = True  # stopped before its first training episode: nothing to lose, start it over
    if status is not None and not resume and not force:
        if status == "finished":
            raise ConfigError(f"out: {out} holds a finished run; pass --force to overwrite it, or choose another --out")
        if status == "running":
            raise ConfigError(f"out: {out} holds a run that is still running (pid {read_summary(out).get('pid')})")  # type: ignore[union-attr]
        raise ConfigError(
            f"out: {out} holds an unfinished run (status {status}); continue it with `guidedmarl resume {out}`, "
            "or pass --force to start it over"
        )
    if status == "running" and force:
        raise ConfigError(f"out: {out} holds a run that is still running; stop it first")
    if force and not resume:
        clear_run(out)
    out.mkdir(parents=True, exist_ok=True)


def clear_run(out: Path) -> None:
    """Delete the files a run writes (and ``eval-*.json``) from ``out``; other files stay."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for path in out.glob("eval-*.json"):
        path.unlink()
    for name in RUN_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)


def git_commit(where: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``where``, or None (not a checkout, no git)."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=5,
                                  check=True).stdout.strip()  # fmt: skip

        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def provenance(threads: int, device: str, command: str) -> dict[str, Any]:
    """What produced a session's numbers: versions, commit, threads, device, host, command."""
    versions = {}
    for name in ("guidedmarl", *LIBRARIES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "guidedmarl": versions.pop("guidedmarl"),
        "git": git_commit(Path(__file__).resolve().parent),
        "threads": threads,
        "device": device,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "command": command,
        "libraries": versions,
    }


def record_session(out: Path, session: dict[str, Any]) -> None:
    """Append ``session`` to ``provenance.json`` (``{"sessions": [...]}``)."""
    path = Path(out) / PROVENANCE
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        data = {}
    sessions = data.get("sessions", []) if isinstance(data, dict) else []
    atomic_write_json(path, {"sessions": [*sessions, session]})


def write_status(out: Path, status: str, **fields: Any) -> None:
    """``summary.json`` with ``status`` (plus ``pid``/``host`` while running) and ``fields``."""
    summary: dict[str, Any] = {"status": status, **fields}
    if status == "running":
        summary |= {"pid": os.getpid(), "host": socket.gethostname()}
    summary["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_json(Path(out) / SUMMARY, summary)
