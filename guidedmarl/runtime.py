"""Process settings that decide CPU speed: torch threads, OpenMP waiting and the allocator.

* **Threads**: ``torch.set_num_threads`` (the run's ``threads``).
* **OpenMP waiting**: an idle OpenMP worker thread spins by default, which on a busy 2-core
  machine steals the core another job (or the other half of this one) needs; evaluation
  with two threads was bimodal (13 s or 64 s against 17 s with one thread).
  ``import guidedmarl`` sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set;
  it takes effect only if torch was not imported before guidedmarl (OpenMP reads it once).
* **Allocator** (glibc Linux): glibc serves every allocation above its mmap threshold
  (at most 32 MiB) with a fresh ``mmap`` and gives it back on free, so every large tensor
  (a minibatch's hidden layer at N = 1500 is 43 MiB) is zero-filled page by page by the kernel
  each time it is made: a ReLU over 170,000 x 64 floats took 24 ms, 4.3 ms with the memory
  kept. :func:`keep_freed_memory` tells glibc to serve large blocks from its heap and to keep
  freed memory for reuse (``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 1 GiB)``).
  The cost: memory freed by the process stays mapped to it (its resident set does not shrink
  after a peak). ``GUIDEDMARL_ALLOCATOR=system`` leaves glibc's defaults.

:func:`guidedmarl.experiment.build` (so ``guidedmarl run``, every study cell and the benchmarks)
sets the threads and calls :func:`keep_freed_memory`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4
_KEEP_BYTES = 1 << 30

_allocator_state: str | None = None


def keep_freed_memory() -> str:
    """Make glibc keep large freed blocks for reuse (see the module docstring), once per process.

    Returns what was done: ``"kept"``, ``"system"`` (``GUIDEDMARL_ALLOCATOR=system``) or
    ``"unavailable"`` (not Linux with glibc).
    """
    global _allocator_state
    if _allocator_state is not None:
        return _allocator_state
    choice = os.environ.get("GUIDEDMARL_ALLOCATOR", "keep").strip().lower()
    if choice not in ("keep", "system"):
        raise ValueError(f"GUIDEDMARL_ALLOCATOR must be 'keep' or 'system', got {choice!r}")
    if choice == "system":
        _allocator_state = "system"
        return _allocator_state
    libc = None
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            libc = None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        _allocator_state = "unavailable"
        return _allocator_state
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES) == 1
    _allocator_state = "kept" if ok else "unavailable"
    return _allocator_state
