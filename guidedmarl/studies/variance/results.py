"""Result records of the variance study (kept apart from the study, which the reports do not import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guidedmarl.studies.stats import PowerLawFit

ESTIMATORS: tuple[str, ...] = ("shared", "guidance", "dgpg")
"""The three estimators: (a) shared return, (b) guidance, (c) DG-PG mixed."""
LABELS = {"shared": "(a) shared return", "guidance": "(b) guidance", "dgpg": "(c) DG-PG mixed"}
COLOURS = {"shared": "tab:red", "guidance": "tab:blue", "dgpg": "tab:purple"}


@dataclass
class VarianceStudyResult:
    """What a variance study produced (also written to ``out``).

    Attributes:
        rows: one per (N, estimator), the columns of ``variance.csv``.
        fits: quantity (``variance``, ``relative_variance``) -> estimator -> power-law fit.
        meta: what was resolved (alpha, progress, gamma, steps, domain settings, surrogate).
        bias: one per N, the first-order weight's bias against the exact difference
            (:func:`guidedmarl.studies.variance.measure.first_order_bias`); empty when not measured.
    """

    out: Path
    rows: list[dict[str, Any]]
    fits: dict[str, dict[str, PowerLawFit]]
    seconds: float
    per_n_seconds: dict[int, float]
    meta: dict[str, Any]
    bias: list[dict[str, Any]] = field(default_factory=list)
