"""Result records of the grid studies (kept apart from the study, which the reports do not import)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class CellResult:
    """One run of the grid (read back from the cell store when it was reused)."""

    arm: str
    algo: str
    agents: int
    seed: int
    episodes: int
    out: Path
    curve_episodes: list[int]  # evaluated episodes, 0 (untrained) first
    curve: list[float]  # test reward at those episodes
    best: float
    best_episode: int
    final: float
    final_other_mode: float
    seconds: float
    steps_per_episode: int  # training environment steps per episode (envs x horizon)
    converged_at: int | None = None  # training episode, None: not converged or not defined
    reused: bool = False


@dataclass
class ArmSummary:
    """Aggregate over seeds of one (N, arm): mean and sample std (:mod:`guidedmarl.studies.stats`)."""

    agents: int
    arm: str
    label: str
    algo: str
    episodes: int
    seeds: int
    converged: int | None  # None: convergence not defined (no floor / target)
    episodes_to_converge: float | None  # mean over converged seeds
    per_seed_converge: list[int | None]
    best_mean: float
    best_std: float
    final_mean: float
    final_std: float
    best_episode_mean: float
    seconds_mean: float
    seconds_std: float


@dataclass
class GridStudyResult:
    """What a grid study produced (also written to ``out``)."""

    out: Path
    cells: list[CellResult]
    summaries: list[ArmSummary]
    heuristics: dict[int, dict[str, float]]  # N -> name -> mean test reward
    seconds: float
    cells_run: int
    cells_reused: int
    convergence_note: str = ""
    floor: str | None = None  # the heuristics used as floor and target (None: no convergence)
    target: str | None = None
