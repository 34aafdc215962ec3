"""Settings of the variance study, and surrogate models given as text (shared with the stress study).

A surrogate (``--surrogate``, the stress study's ``--variant``) is written ``KIND`` or
``KIND:key=value,key=value`` (values parsed as YAML), ``exact`` / ``none`` for the exact
model, or a JSON object, and validated by :data:`guidedmarl.analytical.surrogates.SurrogateConfig`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from guidedmarl.analytical.surrogates import BiasedConfig, NoisyConfig, RoundedConfig, SurrogateConfig
from guidedmarl.config import format_validation_error
from guidedmarl.errors import ConfigError
from guidedmarl.studies.base import StudySettings, agent_grid

DEFAULT_AGENTS: tuple[int, ...] = (10, 30, 100, 300, 1000, 1500)
DEFAULT_HORIZON = 20
RewardUnits = Literal["sum", "mean"]
SURROGATE_EXAMPLES = 'biased:beta=0.3, noisy:sigma=0.3, rounded:step=0.1, exact, or JSON {"kind": "noisy", "sigma": 0.3}'
_SURROGATE_ADAPTER: TypeAdapter[Any] = TypeAdapter(SurrogateConfig)
Surrogate = BiasedConfig | NoisyConfig | RoundedConfig


def _parse_text(text: str) -> Any:
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"surrogate {text!r}: invalid JSON ({exc}); expected e.g. {SURROGATE_EXAMPLES}") from None
    kind, _, rest = text.partition(":")
    data: dict[str, Any] = {"kind": kind.strip()}
    for part in rest.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ConfigError(
                f"surrogate {text!r}: expected key=value after '{kind}:', got {part.strip()!r}; e.g. {SURROGATE_EXAMPLES}"
            )
        key, raw = part.split("=", 1)
        try:
            data[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            data[key.strip()] = raw.strip()
    return data


def parse_surrogate(spec: Any) -> Surrogate | None:
    """A surrogate model's settings from text, a dict or a config object (None: exact model).

    Any problem raises :class:`ConfigError` naming the field (e.g. ``biased.beta``).
    """
    if spec is None or isinstance(spec, BiasedConfig | NoisyConfig | RoundedConfig):
        return spec
    data: Any = spec
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower() in ("", "exact", "none"):
            return None
        data = _parse_text(text)
    if not isinstance(data, dict):
        raise ConfigError(f"surrogate {spec!r}: expected a mapping or text such as {SURROGATE_EXAMPLES}")
    if data.get("kind") in ("exact", "none", None) and set(data) <= {"kind"}:
        return None
    try:
        return _SURROGATE_ADAPTER.validate_python(data)
    except ValidationError as err:
        raise ConfigError(
            format_validation_error(err, f"surrogate {spec!r}") + f"\n  (expected e.g. {SURROGATE_EXAMPLES})"
        ) from None


def surrogate_dict(spec: Any) -> dict[str, Any] | None:
    """The validated surrogate as a plain dict (None: exact model)."""
    cfg = parse_surrogate(spec)
    return None if cfg is None else cfg.model_dump(mode="json")


def surrogate_label(spec: Any) -> str:
    """Short readable name: ``exact``, ``biased beta=0.3``, ``noisy sigma=1``, ``rounded step=0.1``."""
    cfg = parse_surrogate(spec)
    if cfg is None:
        return "exact"
    if isinstance(cfg, BiasedConfig):
        return f"biased beta={cfg.beta:g}" + ("" if cfg.direction == "random" else f" ({cfg.direction})")
    if isinstance(cfg, NoisyConfig):
        return f"noisy sigma={cfg.sigma:g}"
    return f"rounded step={cfg.step:g}"


def surrogate_text(spec: Any) -> str | None:
    """The surrogate as ``--surrogate`` text (``exact`` for the exact model; None: not given)."""
    if spec is None:
        return None
    data = surrogate_dict(spec)
    if data is None:
        return "exact"
    return data["kind"] + ":" + ",".join(f"{k}={v}" for k, v in data.items() if k != "kind")


class VarianceSettings(StudySettings):
    """What ``guidedmarl study variance`` runs (each choice explained in :mod:`guidedmarl.studies.variance`)."""

    study: ClassVar[str] = "variance"

    agents: list[int] = Field(default_factory=lambda: list(DEFAULT_AGENTS), min_length=1, description="N grid")
    rollouts: int = Field(64, ge=2, le=4096, description="R: rollouts per N, run as R parallel environments")
    scenarios: int = Field(4, ge=1, description="scenario groups; R / scenarios replicas replay each scenario")
    horizon: int | None = Field(
        None, ge=1, description="T: steps per rollout (default 20, or domain_config.horizon; sets the domain's "
        "`horizon` setting)",
    )  # fmt: skip
    seed: int = Field(0, ge=0, le=2**31 - 1, description="run seed: policy initialisation, scenarios, sampling")
    alpha: float | None = Field(
        None, ge=0, le=1,
        description="alpha of the DG-PG estimator (default: the schedule at the policy's progress, 0.9 fresh)",
    )  # fmt: skip
    reward_units: RewardUnits = Field(
        "sum", description="sum: team reward x N (undo a per-agent normalisation); mean: reward as returned"
    )
    checkpoint: Path | None = Field(
        None, description="trainer checkpoint (best.pt / final.pt of a run) to use as the fixed policy"
    )
    bootstrap: int = Field(200, ge=0, le=100_000, description="bootstrap resamples for standard errors and slope intervals")
    first_order_bias: bool = Field(
        True,
        description="also compute the other guidance weight (first order / exact difference) on the same samples "
        "and report the first-order weight's bias ||E[s (g - D)]|| against ||E[s D]|| (not with a noisy surrogate, "
        "which draws a new reference at every call)",
    )
    surrogate: Any = Field(
        None,
        description="imperfect model for (b) and (c): biased:beta=0.3[,direction=uniform], noisy:sigma=0.3, "
        "rounded:step=0.1, exact, or JSON (default: the exact model, or the surrogate of --config/--set)",
    )

    @field_validator("agents")
    @classmethod
    def _agents(cls, value: list[int]) -> list[int]:
        return agent_grid(value)

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"checkpoint not found: {value}")
        return value

    @field_validator("surrogate", mode="before")
    @classmethod
    def _surrogate(cls, value: Any) -> Any:
        """Stored as the validated dict, ``"exact"`` (replaces a configured surrogate) or None (the config decides)."""
        if value is None or value == "exact":
            return value
        return surrogate_dict(value) or "exact"

    @model_validator(mode="after")
    def _groups(self) -> VarianceSettings:
        if self.rollouts % self.scenarios or self.rollouts // self.scenarios < 2:
            raise ValueError(
                f"rollouts ({self.rollouts}) must be a multiple of scenarios ({self.scenarios}) with at least "
                "2 replicas per scenario (variances are computed within scenarios)"
            )
        return self

    def grid(self) -> list[int]:
        """The N grid, ascending, each N once."""
        return sorted({int(n) for n in self.agents})

    def resolved_horizon(self) -> int:
        """T: ``horizon``, else an explicit ``domain_config.horizon`` of the run settings, else 20."""
        if self.horizon is not None:
            return self.horizon
        explicit = self.run_config.get("domain_config", {})
        if isinstance(explicit, dict) and "horizon" in explicit:
            return int(explicit["horizon"])
        return DEFAULT_HORIZON
