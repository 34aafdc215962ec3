"""Result records of the stress study (kept apart from the study, which the reports do not import)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

AGREEMENT_ENVS = 8
"""Training scenarios of the guidance-agreement diagnostic."""


@dataclass(frozen=True)
class Learner:
    """One learner of the learning part: the guided learner with one variant, or the reference.

    Attributes:
        algo: the learner preset.
        label: the variant's label (``exact``, ``rounded step=0.5``...) or the reference's (``MAPPO``).
        surrogate: the variant's surrogate settings (None: the exact model, or no model).
        tag: folder name part of its runs (``dgpg-exact``, ``mappo``).
    """

    algo: str
    label: str
    surrogate: dict[str, Any] | None
    tag: str


@dataclass
class StressResult:
    """What a stress study produced (also written to ``out``)."""

    out: Path
    rows: list[dict[str, Any]]  # one per variant, then the reference learner
    cells: list[dict[str, Any]]  # every learning run (per variant / learner and seed)
    variance: dict[str, dict[str, Any]]  # variant label -> fits and rows of its variance study
    heuristics: dict[int, dict[str, float]]  # seed -> heuristic -> test reward
    agreement: dict[str, dict[str, Any]]  # variant label -> {"fresh"|"trained": agreement with the exact model}
    seconds: float
    executed: dict[str, int]  # cells run in this call: {"variance": k, "learning": m}
    floor: str | None = None  # the heuristics used as floor and target (None: no convergence)
    target: str | None = None


def num(x: Any) -> float:
    """A stored number (None for NaN in JSON) as a float."""
    return float("nan") if x is None else float(x)


def fit_entry(fit: dict[str, Any] | None) -> dict[str, float]:
    """Slope and intervals of a stored power-law fit (NaN where missing)."""
    fit = fit or {}
    return {
        "slope": num(fit.get("slope")),
        "low": num(fit.get("boot_low")),
        "high": num(fit.get("boot_high")),
        "reg_low": num(fit.get("ci_low")),
        "reg_high": num(fit.get("ci_high")),
    }
