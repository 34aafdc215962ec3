"""Schedules for the guidance weight alpha in A_DG = (1 - alpha) A - alpha g.

A schedule maps training progress p in [0, 1] (0 before the first update, 1 at the last)
to alpha in [0, 1]. The method note's final schedule is a linear decay from 0.9 to 0.2:
strong guidance early, when the critic knows nothing, then more weight on the return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

AlphaSchedule = Callable[[float], float]

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ConstantAlpha(BaseModel):
    """alpha(p) = value for the whole run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["constant"] = "constant"
    value: Fraction = Field(0.5, description="alpha throughout training")

    def __call__(self, progress: float) -> float:
        return self.value


class LinearAlpha(BaseModel):
    """alpha(p) = start + (end - start) * p: linear from ``start`` to ``end`` over the run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["linear"] = "linear"
    start: Fraction = Field(0.9, description="alpha at the first training episode")
    end: Fraction = Field(0.2, description="alpha at the last training episode")

    def __call__(self, progress: float) -> float:
        p = min(max(progress, 0.0), 1.0)
        return self.start + (self.end - self.start) * p


def _schedule_kind(value: object) -> str | None:
    """The schedule's ``kind``; a mapping without one (a partial override such as
    ``--set learner.estimator.alpha.end=0.5``) is read by its keys: ``value`` means constant,
    ``start`` / ``end`` mean linear (the default schedule's other settings keep their defaults)."""
    if isinstance(value, BaseModel):
        return getattr(value, "kind", None)
    if not isinstance(value, dict):
        return None
    if "kind" in value:
        return value["kind"]
    return "constant" if "value" in value else "linear"


ScheduleConfig = Annotated[
    Union[Annotated[ConstantAlpha, Tag("constant")], Annotated[LinearAlpha, Tag("linear")]],
    Discriminator(
        _schedule_kind,
        custom_error_type="alpha_kind",
        custom_error_message="alpha.kind must be 'constant' (with value) or 'linear' (with start, end)",
    ),
]


def checked_alpha(schedule: AlphaSchedule, progress: float) -> float:
    """Evaluate any schedule (config or user callable) and check the result lies in [0, 1]."""
    alpha = float(schedule(progress))
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha schedule returned {alpha} at progress {progress:.3f}; alpha must lie in [0, 1]")
    return alpha
