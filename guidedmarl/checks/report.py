"""The check results and report of :func:`guidedmarl.checks.check_domain`, and the small helpers that
turn a user's error into a check's message (method names, shapes, differences, tolerances)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from guidedmarl.errors import DomainError, GuidedMarlError

Status = Literal["pass", "fail", "skip", "info"]


@dataclass
class CheckResult:
    """One check: ``status`` pass, fail, skip (not applicable, or blocked by a failure) or info (a figure)."""

    name: str
    status: Status
    message: str
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status != "fail"


@dataclass
class CheckReport:
    """What :func:`check_domain` returns: ``results`` in order, ``ok``, ``raise_if_failed()``, ``table()``."""

    domain: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no check named {name!r}; checks: {', '.join(r.name for r in self.results)}")

    def raise_if_failed(self) -> None:
        """Raise a :class:`~guidedmarl.errors.DomainError` listing every failed check with its message."""
        failed = [f"- {r.name}: {r.message}" for r in self.results if not r.passed]
        if failed:
            raise DomainError(f"domain '{self.domain}' failed {len(failed)} of {len(self.results)} checks:\n"
                              + "\n".join(failed))

    def table(self, width: int = 110) -> str:
        """The results as a plain-text table, messages wrapped to ``width`` columns."""
        w = max(len("check"), *(len(r.name) for r in self.results))
        lines = [f"{'check':<{w}}  result  message", f"{'-' * w}  ------  -------"]
        for r in self.results:
            text = textwrap.wrap(r.message, max(30, width - w - 10)) or [""]
            lines.append(f"{r.name:<{w}}  {'FAIL' if r.status == 'fail' else r.status:<6}  {text[0]}")
            lines += [" " * (w + 10) + more for more in text[1:]]
        n = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "skip", "info")}
        return "\n".join([*lines, f"{len(self.results)} checks: {n['pass']} passed, {n['fail']} failed, "
                                  f"{n['skip']} skipped, {n['info']} measured"])

    __str__ = table


class CheckFailed(Exception):
    """A check's failure; the message is the check's message."""


@contextmanager
def _blame(what: str) -> Iterator[None]:
    """A raw exception inside a user's method becomes a failure that names the method."""
    try:
        yield
    except (CheckFailed, GuidedMarlError):
        raise
    except Exception as exc:  # noqa: BLE001 - an error in the user's code is reported, not raised
        raise CheckFailed(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, (CheckFailed, GuidedMarlError)) else f"{type(exc).__name__}: {exc}"


def _shape(t: Any) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}" if isinstance(t, Tensor) else type(t).__name__


def _max_diff(a: Tensor, b: Tensor) -> float:
    """max |a - b| (NaN equals NaN; inf for different shapes)."""
    if a.shape != b.shape:
        return math.inf
    a, b = a.double(), b.double()
    return float(torch.where((a == b) | (a.isnan() & b.isnan()), 0.0, (a - b).abs()).max()) if a.numel() else 0.0


def _tolerance(rtol: float | None, *ts: Tensor) -> float:
    """``rtol`` (default 1000 epsilons of the dtype) times 1 + the largest magnitude in ``ts``."""
    eps = max(torch.finfo(t.dtype).eps if t.is_floating_point() else 0.0 for t in ts)
    scale = max((float(t.double().abs().max()) for t in ts if t.numel()), default=0.0)
    return (rtol if rtol is not None else 1e3 * eps) * (1.0 + scale)


def _peak(figures: dict[str, float], key: str, value: float) -> None:
    figures[key] = max(figures.get(key, 0.0), value)


def _run(name: str, fn: Callable[[], str | CheckResult]) -> CheckResult:
    try:
        out = fn()
        return out if isinstance(out, CheckResult) else CheckResult(name, "pass", out)
    except Exception as exc:  # noqa: BLE001
        return CheckResult(name, "fail", _describe(exc))
