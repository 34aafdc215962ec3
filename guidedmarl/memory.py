"""An estimate of the memory a run needs, checked against what the machine has before work starts.

A run that asks for far more agents than memory allows (``--agents 1000000`` on a laptop) would
otherwise grow for minutes and end in the kernel's out-of-memory kill, losing its folder's
state. :func:`estimate_run_memory` adds up, in bytes:

* ``base``: Python, torch and the libraries (measured: 0.38 GB peak for a run with N = 6);
* ``rollout``: the per-step records of one training episode, T x E x (N x (obs_dim x 4 + 40)
  + state_dim x 4) (observations in float32, plus actions, log-probabilities, values, masks and
  the estimator's records);
* ``update``: two minibatch copies of those records (the minibatch, and its active samples
  for the policy) plus the actor's activations kept for the backward pass of one chunk of at
  most ``ppo.chunk_samples`` samples, 3 x sum(hidden) x 4 bytes per sample (per option for an
  option scorer);
* ``environments``: what the domain says its training, validation and test environments hold
  (:meth:`guidedmarl.Domain.memory_bytes`: scenario data, simulator state); 0 for a domain
  that does not say.

The estimate is an order of magnitude, not a promise (docs/reliability.md compares it with
measured peaks); the check refuses a run only when the estimate exceeds the memory available
(``MemAvailable`` of ``/proc/meminfo``), and ``memory_check: false`` skips it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from guidedmarl.errors import ConfigError

def peak_resident_mib() -> float | None:
    """Peak resident set size of this process so far (MiB), from ``getrusage``; None where the
    platform has no ``resource`` module (Windows). Linux reports KiB, macOS bytes."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


BASE_BYTES = 400 * 2**20
"""Python, torch and the libraries, rounded up from the measured 0.38 GB of a tiny run."""
GIB = 2**30


@dataclass
class MemoryEstimate:
    """Bytes per part of a run (see the module docstring); ``total`` is their sum."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        """``12.3 GiB (rollout 8.0, update 2.1, ...)``."""
        items = ", ".join(f"{k} {v / GIB:.1f}" for k, v in sorted(self.parts.items(), key=lambda kv: -kv[1]))
        return f"{self.total / GIB:.1f} GiB ({items})"


def estimate_run_memory(
    *,
    num_agents: int,
    obs_dim: int,
    state_dim: int,
    horizon: int,
    num_actions: int,
    train_envs: int,
    hidden: list[int],
    num_minibatches: int,
    option_scorer: bool,
    environment_bytes: int,
    chunk_samples: int | None = None,
) -> MemoryEstimate:
    """The estimate for one run (all sizes as in :class:`~guidedmarl.env.EnvSpec` and the PPO settings;
    ``chunk_samples`` None: the update holds a whole minibatch in one pass)."""
    per_step = num_agents * (obs_dim * 4 + 40) + state_dim * 4
    rollout = horizon * train_envs * per_step
    samples = horizon * train_envs * num_agents / max(num_minibatches, 1)
    if chunk_samples is not None:  # one backward pass holds at most this many samples
        samples = min(samples, chunk_samples)
    activations = samples * 3 * sum(hidden) * 4 * (num_actions if option_scorer else 1)
    update = 2 * (rollout // max(num_minibatches, 1)) + int(activations)
    return MemoryEstimate({"base": BASE_BYTES, "rollout": rollout, "update": update, "environments": environment_bytes})


def available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` in bytes, or None where the system does not say (not Linux)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(estimate: MemoryEstimate, available: int | None) -> None:
    """A :class:`ConfigError` when the estimate exceeds ``available`` (None: nothing to check against)."""
    if available is None or estimate.total <= available:
        return
    raise ConfigError(
        f"agents: this run needs about {estimate.describe()} of memory, but the machine has "
        f"{available / GIB:.1f} GiB available; lower --agents, --envs or eval.test_scenarios / "
        "eval.validation_scenarios, or set memory_check: false to start anyway"
    )
