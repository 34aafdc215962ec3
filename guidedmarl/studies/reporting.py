"""Output helpers shared by the studies' reports.

:func:`machine_info` and :func:`write_command_file` (``command.txt``), :func:`finite_or_null`
(strict JSON), :func:`write_json` and :func:`write_rows` (the JSON and CSV files),
:func:`command_block` (the command in a Markdown report), :func:`interval_text` and
:func:`slope_label` (fitted power-law slopes), :func:`plus_minus` (mean ± spread).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def machine_info() -> dict[str, Any]:
    """Platform, Python, CPU count and library versions (written to ``command.txt`` and the JSON)."""
    import torch

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
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_null(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, doc: Any) -> None:
    """``doc`` as strict JSON (NaN as null), indented by one space."""
    path.write_text(json.dumps(finite_or_null(doc), indent=1, default=str, allow_nan=False))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows with the same keys as one CSV file (columns in the order of the first row)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


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


def plus_minus(mean: float, spread: float, digits: int = 1) -> str:
    """``mean ± spread``; the mean alone when the spread is not defined (one seed); ``–`` without a mean."""
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {spread:.{digits}f}" if math.isfinite(spread) else "")
