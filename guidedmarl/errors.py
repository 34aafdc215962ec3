"""The library's errors: one base class, a subclass per kind of failure.

Every error guidedmarl raises on purpose is a :class:`GuidedMarlError`, so a caller (and the
command line) can tell "the library refused, with a message" from a bug. This module imports
nothing heavy (no torch), so a command line or a config tool can catch these errors cheaply.

The command line maps :class:`ConfigError` to exit code 2 (a usage error: fix the settings)
and every other :class:`GuidedMarlError` to exit code 1, printing the message on one line.

Each subclass also derives from the built-in exception it refines (``ValueError`` for bad
input, ``RuntimeError`` for failures while running), so code written against the built-ins
keeps working.
"""

from __future__ import annotations


class GuidedMarlError(Exception):
    """Base of every error the library raises deliberately; the message says what to change."""


class ConfigError(GuidedMarlError, ValueError):
    """A configuration file or value that cannot be used; the message names the field."""


class DomainError(GuidedMarlError, ValueError):
    """A domain (environment, model, heuristics) broke its contract with the library.

    Raised where a user's method returns: the message names the method and the shapes.
    """


class GuidanceError(GuidedMarlError, RuntimeError):
    """An analytical model produced unusable values (NaN, wrong shape, bad indices...)."""


class TrainingError(GuidedMarlError, RuntimeError):
    """Training produced unusable numbers (NaN losses, rewards, advantages...)."""


class SolverError(GuidedMarlError, RuntimeError):
    """A convex program behind a reference state failed or was infeasible."""


class CheckpointError(GuidedMarlError, ValueError):
    """A checkpoint file that is missing, corrupt or from another configuration."""


class StudyError(GuidedMarlError, RuntimeError):
    """A study could not run or reuse a cell (e.g. a stored cell disagrees with its spec)."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DomainError",
    "GuidanceError",
    "GuidedMarlError",
    "SolverError",
    "StudyError",
    "TrainingError",
]
