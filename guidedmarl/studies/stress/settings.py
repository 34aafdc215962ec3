"""Settings of the stress study (pydantic; the command line is generated from them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError, field_validator, model_validator

from guidedmarl.studies.base import CellStudySettings
from guidedmarl.studies.options import cli
from guidedmarl.studies.variance.settings import VarianceSettings, parse_surrogate, surrogate_dict, surrogate_label

DEFAULT_VARIANTS: tuple[str, ...] = (
    "exact",
    "biased:beta=0.1",
    "biased:beta=0.3",
    "biased:beta=1.0",
    "noisy:sigma=0.3",
    "noisy:sigma=1.0",
    "rounded:step=0.1",
    "rounded:step=0.5",
)
"""Default variants. Cloud: x is a server's committed utilisation; one job moves it by
about 0.01-0.25 (median 0.06 CPU, 0.03 memory at N = 50), so step 0.1 is about twice a
typical job's effect and step 0.5 about ten times (most guidance weights become 0)."""
DEFAULT_VARIANCE_AGENTS: tuple[int, ...] = (10, 100, 1000)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
GUIDED_LEARNER = "dgpg"
"""The learner whose analytical model the variants replace."""


class StressSettings(CellStudySettings):
    """What ``guidedmarl study stress`` runs (see :mod:`guidedmarl.studies.stress`)."""

    study: ClassVar[str] = "stress"

    variants: list[Any] = Field(
        default_factory=lambda: list(DEFAULT_VARIANTS),
        min_length=1,
        description="model variant, repeatable (or ;-separated): exact, biased:beta=0.3[,direction=uniform], "
        "noisy:sigma=0.3, rounded:step=0.1, or JSON",
        json_schema_extra=cli("--variant", separator=";"),
    )
    agents: int = Field(50, ge=1, le=1_000_000, description="N of the learning runs")
    episodes: int = Field(10, ge=1, le=1_000_000, description="training episodes per run")
    seeds: list[int] = Field(
        default_factory=lambda: list(DEFAULT_SEEDS), min_length=1, description="seeds of the learning runs"
    )
    reference: str | None = Field(
        "mappo", description="no-guidance reference learner: a preset without guidance (mappo, ippo, mfac) or none"
    )
    variance_agents: list[int] = Field(
        default_factory=lambda: list(DEFAULT_VARIANCE_AGENTS),
        description="N grid of the variance part (0: no variance part)",
        json_schema_extra=cli(empty="0"),
    )
    rollouts: int = Field(64, ge=2, le=4096, description="variance part: rollouts per N")
    scenarios: int = Field(4, ge=1, description="variance part: scenario groups")
    horizon: int | None = Field(None, ge=1, description="variance part: steps per rollout (default 20)")
    bootstrap: int = Field(200, ge=0, le=100_000, description="variance part: bootstrap resamples")
    variance_seed: int = Field(0, ge=0, le=2**31 - 1, description="variance part: seed of the fixed fresh policy")

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[Any]) -> list[Any]:
        labels = [surrogate_label(v) for v in value]  # parses each (a ConfigError names the field)
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ValueError(f"each variant at most once, got {twice} twice")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if any(s < 0 for s in value) or len(set(value)) != len(value):
            raise ValueError(f"distinct non-negative integers expected, got {value}")
        return value

    @field_validator("reference", mode="before")
    @classmethod
    def _reference(cls, value: Any) -> Any:
        if value is None or str(value).lower() == "none":
            return None
        from guidedmarl.learners import PRESETS
        from guidedmarl.studies.grid.settings import is_guided

        name = str(value).lower()
        if name not in PRESETS or is_guided(name):
            unguided = [p for p in PRESETS.names() if not is_guided(p)]
            raise ValueError(f"one of {', '.join(unguided)} or none, got {value!r}")
        return name

    @field_validator("variance_agents")
    @classmethod
    def _variance_agents(cls, value: list[int]) -> list[int]:
        if any(n < 0 for n in value):
            raise ValueError(f"every N must be >= 1 (0: no variance part), got {value}")
        return [n for n in value if n != 0]

    @model_validator(mode="after")
    def _variance_part(self) -> StressSettings:
        if self.variance_agents:
            try:
                self.variance_settings(None, Path("unused"), {})
            except ValidationError as err:
                raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())) from None
        return self

    def labels(self) -> list[str]:
        """The variants' labels (``exact``, ``biased beta=0.3``...), in order."""
        return [surrogate_label(v) for v in self.variants]

    def variance_settings(self, variant: Any, out: Path, base: dict[str, Any]) -> VarianceSettings:
        """The variance study of one variant (``base``: the shared run settings)."""
        return VarianceSettings(
            domain=base.get("domain") or self.domain or self.run_config.get("domain"),
            agents=list(self.variance_agents),
            rollouts=self.rollouts,
            scenarios=self.scenarios,
            horizon=self.horizon,
            seed=self.variance_seed,
            bootstrap=self.bootstrap,
            threads=self.threads,
            out=out,
            run_config=base,
            surrogate=surrogate_dict(variant),
        )



