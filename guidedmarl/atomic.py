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
