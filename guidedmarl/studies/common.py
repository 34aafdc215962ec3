"""Helpers shared by the studies and their command lines.

* outputs: :func:`machine_info` and :func:`write_command_file` (``command.txt``),
  :func:`finite_or_null` (strict JSON), :func:`command_block` (the command in a Markdown
  report), :func:`interval_text` and :func:`slope_label` (fitted power-law slopes);
* command line: :func:`split_list`, :func:`parse_ints`, :func:`parse_floats` (list
  options given comma-separated or repeated), :func:`study_target` (domain and output
  folder), :func:`command_line` (the command as typed and with every option resolved,
  written to ``command.txt``) and :func:`exit_on_error`. ``--config`` / ``--set`` are
  read by :func:`guidedmarl.config.load_settings`.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import sys
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
import typer
from rich.console import Console

from guidedmarl.config import ConfigError

err_console = Console(stderr=True)


# ------------------------------------------------------------------ outputs
def machine_info() -> dict[str, Any]:
    """Platform, Python, CPU count and library versions (written to ``command.txt`` and the JSON)."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
    }


def write_command_file(out: Path, command: str, seconds: float, details: Iterable[str] = ()) -> Path:
    """Write ``out/command.txt``: the command, the wall-clock seconds, ``details`` lines, the machine."""
    lines = [f"command: {command}", f"wall-clock seconds: {seconds:.1f}", *details]
    lines += [f"{k}: {v}" for k, v in machine_info().items()]
    path = out / "command.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def finite_or_null(obj: Any) -> Any:
    """``obj`` for strict JSON: NaN and infinities as None, keys as text, paths as text (recursive)."""
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_null(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def command_block(command: str) -> list[str]:
    """Markdown lines presenting the command of a report (a fenced block under ``Command:``)."""
    return ["Command:", "", "```", command, "```", ""]


def interval_text(low: float, high: float) -> str:
    """``[low, high]`` with two decimals, or ``n/a`` when the interval is not defined."""
    return f"[{low:.2f}, {high:.2f}]" if math.isfinite(low) else "n/a"


def slope_label(label: str, slope: float, low: float, high: float) -> str:
    """Legend entry of a fitted power law: ``LABEL: slope S [LOW, HIGH]`` (interval if defined)."""
    if not math.isfinite(slope):
        return label
    return f"{label}: slope {slope:.2f}" + (f" [{low:.2f}, {high:.2f}]" if math.isfinite(low) else "")


# ------------------------------------------------------------------ command line
def split_list(items: list[str] | None) -> list[str]:
    """``["a,b", "c d"]`` -> ``["a", "b", "c", "d"]``: commas, spaces and repeated options all work."""
    out: list[str] = []
    for item in items or []:
        out += [p for p in item.replace(" ", ",").split(",") if p]
    return out


def _parse_numbers(items: list[str] | None, what: str, convert: Callable[[str], Any], noun: str) -> list[Any]:
    values: list[Any] = []
    for part in split_list(items):
        try:
            values.append(convert(part))
        except ValueError:
            raise ConfigError(f"{what} expects {noun}, got '{part}'") from None
    return values


def parse_ints(items: list[str] | None, what: str) -> list[int]:
    """Integers of a list option (see :func:`split_list`); ``what`` names the option in errors."""
    return _parse_numbers(items, what, int, "integers")


def parse_floats(items: list[str] | None, what: str) -> list[float]:
    """Numbers of a list option (see :func:`split_list`); ``what`` names the option in errors."""
    return _parse_numbers(items, what, float, "numbers")


def study_target(study: str, domain: str | None, data: dict[str, Any], out: Path | None) -> tuple[str, Path]:
    """The domain (``--domain``, else ``domain`` of the settings, else ``cloud``) and the output
    folder (``--out``, else ``runs/STUDY-DOMAIN``) of a study command."""
    name = domain or data.get("domain", "cloud")
    return name, out if out is not None else Path(f"runs/{study}-{name}")


def exit_on_error(exc: Exception, code: int) -> NoReturn:
    """Print ``error: EXC`` on standard error and leave the command with exit status ``code``."""
    err_console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code) from None


def command_line(study: str, params: dict[str, Any], joined: Collection[str] = ()) -> str:
    """The command as typed (when run as ``guidedmarl``), plus an equivalent one with every option resolved.

    ``params`` maps option names (``_`` for ``-``) to values; None and empty lists are left
    out, booleans become ``--flag`` / ``--no-flag``. List values of the keys in ``joined``
    are written comma-separated (floats as ``%g``), other lists as repeated options.
    """
    typed = shlex.join(["guidedmarl", *sys.argv[1:]]) if sys.argv and Path(sys.argv[0]).name == "guidedmarl" else None
    parts = ["guidedmarl", "study", study]
    for key, value in params.items():
        if value is None or value == []:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif isinstance(value, list):
            if key in joined:
                parts += [flag, ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)]
            else:
                for v in value:
                    parts += [flag, str(v)]
        else:
            parts += [flag, str(value)]
    resolved = shlex.join(parts)
    return resolved if typed is None or typed == resolved else f"{typed}\nresolved: {resolved}"
