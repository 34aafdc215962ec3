"""Learners: a critic plus an advantage estimator, and the named presets ``--algo`` picks.

``RunConfig.learner`` holds the two parts, each validated by the config model of its
registered ``kind``::

    learner:
      critic: {kind: central}
      estimator: {kind: dgpg, alpha: {kind: linear, start: 0.9, end: 0.2}, weight: first_order}

``RunConfig.algo`` names a **preset**, which fills in the kinds (and any defaults it sets);
settings under ``learner`` are merged on top, so ``--algo dgpg --set
learner.estimator.alpha.start=0.5`` changes one field of DG-PG. A preset fixes its kinds: a
``learner`` whose kinds differ from the preset's is a configuration error (register a preset
for the new combination with :func:`register_preset`).

Shipped presets:

============== ============ =============================================================
preset         critic       estimator
============== ============ =============================================================
``mappo``      central      shared_return
``ippo``       local        shared_return
``dgpg``       central      dgpg, the paper's first-order weight
``dgpg_exact`` central      dgpg, the exact difference phi(x) - phi(x - z_i)
``mfac``       mean_field   shared_return (mean-field actor-critic, Yang et al. 2018)
============== ============ =============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializeAsAny, ValidationError, field_validator

from guidedmarl.errors import ConfigError
from guidedmarl.guidance.estimator import ESTIMATORS, EstimatorConfig
from guidedmarl.registry import Registry
from guidedmarl.training.critics import CRITICS, CriticConfig


def _validated(value: Any, registry: Registry[Any], what: str) -> BaseModel:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, dict) or "kind" not in value:
        raise ValueError(f"the {what} needs a mapping with a 'kind' (one of {', '.join(registry.names())})")
    cls = registry.get(str(value["kind"]))
    try:
        return cls.config_model.model_validate(value)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise ValueError(problems) from None


class LearnerConfig(BaseModel):
    """A learner: which critic and which advantage estimator, each with its settings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    critic: SerializeAsAny[CriticConfig]
    estimator: SerializeAsAny[EstimatorConfig]

    @field_validator("critic", mode="before")
    @classmethod
    def _critic(cls, value: Any) -> BaseModel:
        return _validated(value, CRITICS, "critic")

    @field_validator("estimator", mode="before")
    @classmethod
    def _estimator(cls, value: Any) -> BaseModel:
        return _validated(value, ESTIMATORS, "estimator")


@dataclass(frozen=True)
class Preset:
    """A named learner: the settings ``--algo NAME`` starts from.

    Attributes:
        name: the ``--algo`` value.
        critic: critic settings (``kind`` and any fields).
        estimator: estimator settings (``kind`` and any fields).
        label: shown in tables and plots.
    """

    name: str
    critic: dict[str, Any]
    estimator: dict[str, Any]
    label: str = ""
    description: str = ""

    def settings(self) -> dict[str, Any]:
        return {"critic": dict(self.critic), "estimator": dict(self.estimator)}


def _check_preset(item: object) -> None:
    if not isinstance(item, Preset):
        raise TypeError(f"register_preset expects a guidedmarl.learners.Preset, got {item!r}")


PRESETS: Registry[Preset] = Registry("learner preset", "guidedmarl.presets", _check_preset)


def register_preset(preset: Preset, *, replace: bool = False) -> Preset:
    """Make ``preset`` available as ``--algo preset.name``."""
    return PRESETS.register(preset, preset.name, replace=replace)


def preset_label(name: str) -> str:
    """The display label of a preset (its name when unknown)."""
    try:
        return PRESETS.get(name).label or name
    except ConfigError:
        return name


def resolve_learner(algo: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The learner settings of preset ``algo`` with ``overrides`` merged on top (a dict).

    Raises :class:`ConfigError` when ``overrides`` changes a kind the preset fixes.
    """
    from guidedmarl.config import deep_merge  # config imports this module

    merged = deep_merge(PRESETS.get(algo).settings(), overrides or {})
    check_preset_kinds(algo, merged)
    return merged


def check_preset_kinds(algo: str, learner: dict[str, Any] | LearnerConfig) -> None:
    """Raise :class:`ConfigError` if ``learner``'s critic or estimator kind is not preset ``algo``'s."""
    preset = PRESETS.get(algo)
    for part in ("critic", "estimator"):
        value = getattr(learner, part) if isinstance(learner, LearnerConfig) else learner.get(part, {})
        got = value.kind if isinstance(value, BaseModel) else (value or {}).get("kind")
        want = getattr(preset, part).get("kind")
        if got != want:
            raise ConfigError(
                f"{part}.kind: preset '{algo}' uses {part} '{want}', got '{got}'; choose the preset "
                f"with that {part} (--algo) or register a new one (guidedmarl.learners.register_preset)"
            )


for _preset in (
    Preset("mappo", {"kind": "central"}, {"kind": "shared_return"}, "MAPPO", "centralised critic, shared return"),
    Preset("ippo", {"kind": "local"}, {"kind": "shared_return"}, "IPPO", "independent critics, shared return"),
    Preset("dgpg", {"kind": "central"}, {"kind": "dgpg"}, "DG-PG", "MAPPO plus descent guidance (first-order g)"),
    Preset(
        "dgpg_exact",
        {"kind": "central"},
        {"kind": "dgpg", "weight": "exact_difference"},
        "DG-PG (exact)",
        "MAPPO plus descent guidance (exact difference of the potential)",
    ),
    Preset("mfac", {"kind": "mean_field"}, {"kind": "shared_return"}, "MF-AC", "mean-field actor-critic"),
):
    register_preset(_preset)
