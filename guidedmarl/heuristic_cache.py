"""The heuristics' test rewards, kept on disk between runs (they are deterministic).

A heuristic's score on the test scenarios depends only on the domain, its settings, N, the
scenario seeds, the heuristic's own seed and the code. A run at N = 1500 spent about 100 s
(nine heuristics on 40 scenarios) recomputing the same numbers before every run;
:func:`cached_heuristics` computes them once and later runs read them back.

The key is a SHA-256 of: the domain's name, its validated settings, N, the device, the test
seeds, the heuristics' seed, the names of the heuristics, and a fingerprint of the code
(every ``.py`` file of ``guidedmarl`` and of the package that defines the domain, plus the
torch version). A change to any of them is a different key, so a stale entry is never read.
An unreadable or mismatched entry is recomputed and rewritten (atomically).

Where: ``$GUIDEDMARL_CACHE_DIR`` if set (``off`` disables the cache), else
``$XDG_CACHE_HOME/guidedmarl`` or ``~/.cache/guidedmarl``; ``eval.heuristics_cache=false``
turns it off for one run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from guidedmarl.atomic import atomic_write_json

FORMAT = 1


def cache_dir() -> Path | None:
    """The cache folder, or None when ``GUIDEDMARL_CACHE_DIR=off``."""
    explicit = os.environ.get("GUIDEDMARL_CACHE_DIR")
    if explicit is not None:
        return None if explicit.strip().lower() in ("off", "none", "") else Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "guidedmarl"


@lru_cache(maxsize=None)
def _tree_digest(root: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def code_fingerprint(obj: object) -> str:
    """Digest of guidedmarl's sources, those of the package that defines ``obj``'s class, and torch's version."""
    import guidedmarl

    module = sys.modules.get(type(obj).__module__)
    roots = {str(Path(guidedmarl.__file__).resolve().parent)}
    if module is not None and getattr(module, "__file__", None):
        top = sys.modules.get(module.__name__.split(".")[0])
        top_file = getattr(top, "__file__", None) or module.__file__
        roots.add(str(Path(top_file).resolve().parent))
    parts = [_tree_digest(r) for r in sorted(roots)] + [torch.__version__]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def cache_key(description: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()


def cached_heuristics(
    description: dict[str, Any],
    names: list[str],
    compute: Callable[[], dict[str, dict[str, Any]]],
    folder: Path | None = None,
) -> tuple[dict[str, dict[str, Any]], bool]:
    """The heuristics' results (``EvalResult.as_dict`` per name) and whether they came from the cache.

    Args:
        description: what the results depend on (domain, settings, N, seeds...), JSON-able;
            the code fingerprint is part of it.
        names: the heuristics' names, in order (a cached entry must hold exactly these).
        compute: evaluates every heuristic (called on a miss).
        folder: the cache folder (default :func:`cache_dir`); None disables the cache.
    """
    folder = cache_dir() if folder is None else folder
    if folder is None:
        return compute(), False
    key = cache_key({"format": FORMAT, **description, "heuristics": names})
    path = folder / "heuristics" / f"{key}.json"
    try:
        entry = json.loads(path.read_text())
        if entry.get("key") == key and list(entry["results"]) == names:
            return entry["results"], True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    results = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"key": key, "description": description, "results": results})
    except OSError:
        pass  # a read-only or full disk: the run goes on without the cache
    return results, False
