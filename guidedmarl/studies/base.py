"""What every study's settings share, and the convergence definition the learning studies apply.

* :class:`StudySettings`: the base of every study's pydantic settings model: the domain
  (required: ``--domain``, or ``domain`` of the run settings), the output folder, torch
  threads, the run settings of ``--config`` / ``--set`` and the command line.
* :class:`ConvergenceSettings`: floor and target heuristics and the band of the
  :class:`~guidedmarl.convergence.ConvergenceCriterion`. Floor and target default to the
  domain's own (:attr:`Domain.floor_heuristic`, :attr:`Domain.target_heuristic`); a domain
  that names neither, and is given neither, gets no convergence column.
* :func:`converged_at`: the training episode at which a test-reward curve converged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guidedmarl.convergence import ConvergenceCriterion
from guidedmarl.errors import ConfigError
from guidedmarl.studies.options import cli


def require_domain(name: Any) -> str:
    """``name`` as the study's domain; a :class:`ConfigError` listing the domains when it is empty."""
    if not name:
        from guidedmarl.domain import available_domains

        known = ", ".join(available_domains()) or "(none installed)"
        raise ConfigError(
            f"domain: no domain given; pass --domain NAME (or `domain` in the --config settings); available: {known}"
        )
    return str(name)



def require_test_every_evaluation(eval_settings: dict[str, Any], study: str) -> dict[str, Any]:
    """``eval_settings`` of a study's run; a :class:`ConfigError` if they set ``eval.test`` to
    anything but ``"every"``: a study's learning curves are every evaluation's test reward."""
    chosen = eval_settings.get("test", "every")
    if chosen != "every":
        raise ConfigError(
            f"eval.test = {chosen!r}: the {study} study reads a learning curve of test rewards, one per "
            "evaluation, so its runs need eval.test = 'every' (the default)"
        )
    return eval_settings


def agent_grid(value: list[int]) -> list[int]:
    """Validator body of an N grid: every N >= 1 (the message names the offending list)."""
    if any(n < 1 for n in value):
        raise ValueError(f"every N must be >= 1, got {value}")
    return value

class StudySettings(BaseModel):
    """Settings every study has (subclasses add their own fields)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    study: ClassVar[str] = "study"

    domain: str | None = Field(
        None,
        description="registered domain (`guidedmarl domains`), or module:Class / path/to/file.py:Class "
        "(default: `domain` of the --config settings)",
    )
    threads: int | None = Field(
        1, ge=1, le=256, description="torch intra-op threads of every run (default 1, as `guidedmarl run`)",
        json_schema_extra=cli(last=2),
    )  # fmt: skip
    out: Path | None = Field(
        None, description="output folder (default runs/STUDY-DOMAIN)", json_schema_extra=cli(last=2)
    )
    run_config: dict[str, Any] = Field(
        default_factory=dict,
        description="RunConfig-shaped settings (ppo, learner, eval, envs, domain_config...) applied to every run",
        json_schema_extra=cli(hidden=True),
    )
    command: str | None = Field(None, description="the command line, for command.txt", json_schema_extra=cli(hidden=True))

    @property
    def domain_name(self) -> str:
        """``domain``, else ``run_config["domain"]``; a :class:`ConfigError` when neither is given."""
        return require_domain(self.domain or self.run_config.get("domain"))

    def resolved_out(self) -> Path:
        """``out``, else ``runs/STUDY-DOMAIN``."""
        if self.out is not None:
            return Path(self.out)
        name = self.domain_name
        return Path(f"runs/{self.study}-{name.rsplit(':', 1)[-1] if ':' in name else name}")


class ConvergenceSettings(StudySettings):
    """Floor, target and band of the convergence criterion (for studies that train)."""

    floor: str | None = Field(
        None,
        description="heuristic used as the convergence floor (default: the domain's floor heuristic)",
        json_schema_extra=cli(last=1),
    )
    target: str | None = Field(
        None,
        description="heuristic used as the convergence target (default: the domain's target heuristic)",
        json_schema_extra=cli(last=1),
    )
    tolerance: float = Field(
        ConvergenceCriterion.tolerance,
        description="convergence band, a fraction of the floor-to-target range",
        json_schema_extra=cli(last=1),
    )

    @field_validator("tolerance")
    @classmethod
    def _tolerance(cls, value: float) -> float:
        ConvergenceCriterion(tolerance=value)  # raises ValueError("tolerance must lie in (0, 1], ...")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> ConvergenceSettings:
        if self.floor is not None and self.floor == self.target:
            raise ValueError(f"floor and target must be different heuristics, got {self.floor!r} twice")
        return self

    @property
    def criterion(self) -> ConvergenceCriterion:
        return ConvergenceCriterion(tolerance=self.tolerance)


class CellStudySettings(ConvergenceSettings):
    """A study made of cells (scale, alpha, stress): where the cells run (:mod:`guidedmarl.studies.backends`)."""

    workers: int = Field(
        1, ge=1, le=1024,
        description="cells run at once: local worker processes, or Ray CPUs of a local instance (1: one after another)",
        json_schema_extra=cli(last=3),
    )  # fmt: skip
    backend: Literal["local", "ray"] = Field(
        "local", description="local processes, or Ray (pip install -e '.[ray]')", json_schema_extra=cli(last=3)
    )
    address: str | None = Field(
        None, description="Ray cluster to join (e.g. auto or ray://HOST:10001; default: start a local instance)",
        json_schema_extra=cli(last=3),
    )  # fmt: skip

    @model_validator(mode="after")
    def _address_needs_ray(self) -> CellStudySettings:
        if self.address is not None and self.backend != "ray":
            raise ValueError("address: only with backend ray (--backend ray)")
        return self

    def backend_spec(self) -> Any:
        """The :class:`~guidedmarl.studies.backends.Backend` of these settings."""
        from guidedmarl.studies.backends import Backend

        return Backend(self.backend, self.workers, self.address)


@dataclass(frozen=True)
class FloorTarget:
    """The heuristics that define convergence, or why there is no convergence column."""

    floor: str | None
    target: str | None
    note: str = ""

    @property
    def defined(self) -> bool:
        return self.floor is not None and self.target is not None


def floor_target(settings: ConvergenceSettings, domain: Any) -> FloorTarget:
    """Floor and target for ``domain`` (a built :class:`~guidedmarl.domain.Domain`): the settings' or the domain's.

    Raises :class:`ConfigError` when a named heuristic is not one of the domain's.
    """
    name = settings.domain_name
    floor = settings.floor or type(domain).floor_heuristic
    target = settings.target or type(domain).target_heuristic
    available = set(domain.heuristics())
    missing = [h for h in (floor, target) if h is not None and h not in available]
    if missing:
        has = ", ".join(sorted(available)) or "none"
        raise ConfigError(
            f"convergence needs the heuristics {missing}, which domain '{name}' does not have "
            f"(it has {has}): choose --floor / --target among them"
        )
    if floor is not None and floor == target:
        raise ConfigError(f"floor and target must be different heuristics, got {floor!r} twice")
    if floor is None or target is None:
        why = "has no heuristics" if not available else "names no floor and target heuristics (give --floor and --target)"
        return FloorTarget(None, None, f"convergence not evaluated: domain '{name}' {why}")
    return FloorTarget(floor, target)


def with_estimator_setting(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Run settings ``data`` with ``learner.estimator.KEY`` replaced (whole) by ``value``.

    A legacy ``guidance.KEY`` is removed, so that it cannot merge into the new value.
    """
    out = dict(data)
    if isinstance(out.get("guidance"), dict):
        out["guidance"] = {k: v for k, v in out["guidance"].items() if k != key}
    learner = dict(out.get("learner") or {})
    learner["estimator"] = {**(learner.get("estimator") or {}), key: value}
    out["learner"] = learner
    return out


def without_estimator_setting(data: dict[str, Any], key: str) -> dict[str, Any]:
    """Run settings ``data`` without ``learner.estimator.KEY`` and its legacy form ``guidance.KEY``."""
    out = with_estimator_setting(data, key, None)
    del out["learner"]["estimator"][key]
    if not out["learner"]["estimator"]:
        del out["learner"]["estimator"]
    if not out["learner"]:
        del out["learner"]
    return out


def converged_at(
    episodes: Sequence[int],
    curve: Sequence[float | None],
    floor: float | None,
    target: float | None,
    criterion: ConvergenceCriterion,
) -> int | None:
    """Training episode at which ``curve`` (test rewards at ``episodes``) converged; None if it did not.

    Episode 0 (the untrained policy) and unevaluated episodes (None) are left out; the
    result is the episode of the evaluation at which the criterion says the run converged.
    None also when convergence is not defined (no floor or target, or floor = target).
    """
    if floor is None or target is None or floor == target:
        return None
    pairs = [(e, r) for e, r in zip(episodes, curve) if e >= 1 and r is not None]
    if not pairs:
        return None
    k = criterion.episodes_to_converge([float(r) for _, r in pairs], floor, target)
    return None if k is None else pairs[k - 1][0]
