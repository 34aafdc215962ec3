"""Settings of the grid studies: ``scale`` (learner presets against N) and ``alpha`` (DG-PG's alpha).

An :class:`Arm` is one learner setting: a learner preset (``guidedmarl learners``), a number
of training episodes and, in the alpha study, an alpha schedule that replaces the
configured one. The settings models are validated by pydantic; the command line is
generated from them (:mod:`guidedmarl.studies.options`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from guidedmarl.studies.base import CellStudySettings, agent_grid
from guidedmarl.studies.options import cli

DEFAULT_AGENTS: tuple[int, ...] = (5, 10, 20, 50, 100, 200, 500, 1000, 1500)
DEFAULT_ALGOS: tuple[str, ...] = ("dgpg", "mappo", "ippo")
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
DEFAULT_ALPHAS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8)
STUDY_CONTROLLED = ("algo", "agents", "episodes", "seed", "out", "threads")
"""Run settings each cell sets itself; the same keys of ``run_config`` are ignored."""


@dataclass(frozen=True)
class Arm:
    """One learner setting of a study (a row group of the table, a line of the curves).

    Attributes:
        name: key: run-directory folder, marl-eval algorithm name (no commas or slashes).
        label: shown in tables and plots.
        algo: the learner preset.
        episodes: training episodes of each run.
        alpha: replaces the estimator's alpha schedule of the settings (None: keep it).
    """

    name: str
    label: str
    algo: str
    episodes: int
    alpha: dict[str, Any] | None = None


def is_guided(algo: str) -> bool:
    """Whether the preset's estimator uses the analytical model (DG-PG and its variants)."""
    from guidedmarl.guidance.estimator import ESTIMATORS
    from guidedmarl.learners import PRESETS

    return bool(ESTIMATORS.get(PRESETS.get(algo).estimator["kind"]).needs_model)


def _distinct(values: list[Any], what: str) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError(f"each {what} once, got {values}")
    return values


class GridSettings(CellStudySettings):
    """What the scale and alpha studies share (see :mod:`guidedmarl.studies.grid`)."""

    title: ClassVar[str] = "learners against N"

    agents: list[int] = Field(default_factory=lambda: list(DEFAULT_AGENTS), min_length=1, description="N grid")
    seeds: list[int] = Field(default_factory=lambda: list(DEFAULT_SEEDS), min_length=1, description="run seeds")
    episodes: int = Field(10, ge=1, le=1_000_000, description="training episodes of the guided learners")
    threads: int | None = Field(
        1, ge=1, le=256, description="torch threads per run (runs are sequential)", json_schema_extra=cli(last=2)
    )

    @field_validator("agents")
    @classmethod
    def _agents(cls, value: list[int]) -> list[int]:
        return agent_grid(value)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if any(s < 0 for s in value):
            raise ValueError(f"must be >= 0, got {value}")
        return _distinct(value, "seed")

    def arms(self) -> list[Arm]:  # pragma: no cover - overridden
        raise NotImplementedError

    def grid(self) -> list[int]:
        """The N grid, ascending, each N once."""
        return sorted(set(self.agents))


class ScaleSettings(GridSettings):
    """Learner presets against N (``guidedmarl study scale``).

    The guided learners (whose estimator uses the model, e.g. ``dgpg``) train ``episodes``
    episodes, the others ``round(episodes * baseline_budget)``.
    """

    study: ClassVar[str] = "scale"
    title: ClassVar[str] = "DG-PG against MAPPO and IPPO over N"

    algos: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALGOS), min_length=1,
        description="learner presets (`guidedmarl learners`), e.g. dgpg,mappo,ippo,mfac,dgpg_exact",
    )  # fmt: skip
    baseline_budget: float = Field(
        2.5, gt=0, le=1000, description="learners without guidance train round(episodes x this) episodes"
    )

    @field_validator("algos")
    @classmethod
    def _algos(cls, value: list[str]) -> list[str]:
        from guidedmarl.learners import PRESETS

        bad = [a for a in value if a not in PRESETS]
        if bad:
            raise ValueError(f"unknown learner presets {bad}; choose from {', '.join(PRESETS.names())}")
        return value

    def baseline_episodes(self) -> int:
        return max(1, round(self.episodes * self.baseline_budget))

    def arms(self) -> list[Arm]:
        from guidedmarl.learners import preset_label

        arms = []
        for algo in dict.fromkeys(self.algos):
            episodes = self.episodes if is_guided(algo) else self.baseline_episodes()
            arms.append(Arm(algo, preset_label(algo), algo, episodes))
        return arms


class AlphaSettings(GridSettings):
    """DG-PG with constant alpha values and the configured schedule (``guidedmarl study alpha``)."""

    study: ClassVar[str] = "alpha"
    title: ClassVar[str] = "DG-PG's guidance weight alpha"

    agents: list[int] = Field(default_factory=lambda: [50], min_length=1, description="N grid")
    alphas: list[float] = Field(
        default_factory=lambda: list(DEFAULT_ALPHAS), description="constant alphas (0 = the descent term removed)"
    )
    decay: bool = Field(True, description="also run the configured schedule (default: linear 0.9 -> 0.2)")

    @field_validator("alphas")
    @classmethod
    def _alphas(cls, value: list[float]) -> list[float]:
        bad = [a for a in value if not 0.0 <= a <= 1.0]
        if bad:
            raise ValueError(f"every value must lie in [0, 1], got {bad}")
        return value

    @model_validator(mode="after")
    def _something(self) -> AlphaSettings:
        if not self.alphas and not self.decay:
            raise ValueError("nothing to run: give --alphas or keep the decay schedule")
        return self

    def arms(self) -> list[Arm]:
        arms = []
        if self.decay:
            arms.append(Arm("dgpg-decay", f"DG-PG, {self.schedule_text()}", "dgpg", self.episodes))
        for a in dict.fromkeys(float(x) for x in self.alphas):
            label = "DG-PG, alpha = 0 (descent term removed)" if a == 0 else f"DG-PG, alpha = {a:g}"
            arms.append(Arm(f"dgpg-alpha{a:g}", label, "dgpg", self.episodes, {"kind": "constant", "value": a}))
        return arms

    def schedule_text(self) -> str:
        """The configured alpha schedule in words (``alpha decay 0.9 -> 0.2``)."""
        from guidedmarl.config import build_config

        data = {k: v for k, v in self.run_config.items() if k in ("guidance", "learner")}
        cfg = build_config({**data, "domain": self.domain_name, "algo": "dgpg"}, "settings")
        alpha = cfg.learner.estimator.alpha  # type: ignore[attr-defined]
        if alpha.kind == "linear":
            return f"alpha decay {alpha.start:g} -> {alpha.end:g}"
        return f"alpha = {alpha.value:g} (configured)"
