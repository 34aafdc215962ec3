"""Atomic file writes: a reader (or a run killed with ``kill -9``) never sees half a file.

Every file of a run folder and of a study store is written here: the bytes go to a
temporary file in the same folder, which is flushed to disk and then renamed over the
target with :func:`os.replace` (atomic on POSIX and Windows). A crash leaves either the
old file or the new one, plus at worst a stray ``.NAME.*.tmp`` that readers ignore.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename); returns ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (serialised first: a bad object writes nothing)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent))


def atomic_torch_save(path: Path, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (serialised in memory, then written)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def unreadable_files(folder: Path) -> list[str]:
    """Files under ``folder`` that do not read back whole, as ``"path: why"`` (empty: all complete).

    Reads every JSON, CSV (rows of one width), YAML, PNG (signature) and torch checkpoint
    (``weights_only``); temporary ``.NAME.*.tmp`` files are ignored, as readers ignore them.
    Used to check that a folder survived a kill (tests) or a loaded study (benchmarks).
    """
    import csv

    import torch
    import yaml

    bad = []
    for path in sorted(Path(folder).rglob("*")):
        if path.is_dir() or path.name.startswith("."):
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".pt":
                torch.load(path, weights_only=True)
            elif path.suffix == ".csv":
                rows = list(csv.reader(path.open()))
                if not rows or any(len(r) != len(rows[0]) for r in rows):
                    raise ValueError("empty, or rows of different widths")
            elif path.suffix in (".yaml", ".yml"):
                yaml.safe_load(path.read_text())
            elif path.suffix == ".png" and path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
                raise ValueError("not a PNG file")
        except Exception as exc:  # noqa: BLE001 - any failure to read back counts
            bad.append(f"{path.relative_to(folder)}: {type(exc).__name__}: {exc}")
    return bad
