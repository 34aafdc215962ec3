"""Fuzzing: generated settings (every field, in and out of range, wrong types) and environment
inputs give a valid run or a clear library error, never a traceback of another kind.

The default suite runs a bounded number of examples; ``pytest -m slow tests/test_fuzz.py``
runs the longer fuzz (docs/reliability.md gives the counts).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from guidedmarl import get_domain
from guidedmarl.config import build_config
from guidedmarl.errors import GuidedMarlError
from guidedmarl.settings_doc import resolved_defaults

FUZZED_DOMAINS = ("cloud", "power", "traffic")
LEFT_ALONE = {"domain", "plugins", "log", "device", "threads", "out"}
"""Fields not fuzzed: ``plugins`` would import arbitrary modules, ``log`` would start external
loggers, ``device``/``threads`` are machine settings checked elsewhere (tests/test_device.py)."""
JUNK = st.sampled_from(["", "x", "nan", None, [], {}, [1, "a"], -1, 0, 10**12, float("nan"), float("inf"), True])


def _leaves(domain: str) -> list[tuple[str, Any]]:
    _, entries = resolved_defaults(domain)
    return [(e.path, e.value) for e in entries if not e.section and e.path.split(".")[0] not in LEFT_ALONE]


def _values_like(default: Any) -> st.SearchStrategy[Any]:
    """Values near, at and beyond the plausible range of a field with this default, and junk."""
    if isinstance(default, bool):
        mine: st.SearchStrategy[Any] = st.booleans()
    elif isinstance(default, int):
        mine = st.one_of(st.integers(-3, 3 * max(abs(default), 1)), st.sampled_from([-(10**9), 10**9]))
    elif isinstance(default, float):
        scale = max(abs(default), 1.0)
        mine = st.one_of(st.floats(-2 * scale, 3 * scale, allow_nan=False), st.sampled_from([math.inf, -math.inf, math.nan]))
    elif isinstance(default, str):
        mine = st.one_of(st.just(default), st.text(max_size=6))
    elif isinstance(default, list):
        mine = st.lists(st.integers(-2, 128), max_size=3)
    else:
        mine = st.just(default)
    return st.one_of(mine, mine, mine, JUNK)  # mostly plausible values, sometimes junk


@st.composite
def settings_dicts(draw: st.DrawFn, domain: str) -> dict[str, Any]:
    leaves = _leaves(domain)
    chosen = draw(st.lists(st.sampled_from(leaves), min_size=1, max_size=4, unique_by=lambda kv: kv[0]))
    data: dict[str, Any] = {"domain": domain}
    for path, default in chosen:
        node = data
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = draw(_values_like(default))
    return data


def _validate_or_clear_error(data: dict[str, Any]) -> Any:
    """The RunConfig and the built domain, or None after a library error (any other error fails the test)."""
    try:
        config = build_config(data, "fuzz")
        domain = get_domain(config.domain).from_config(config.agents, config.domain_config)
    except GuidedMarlError as exc:
        assert str(exc).strip(), "an error without a message"
        event(f"refused by the settings: {type(exc).__name__}")  # counted by --hypothesis-show-statistics
        return None
    event("valid settings")
    return config, domain


@pytest.mark.parametrize("domain", FUZZED_DOMAINS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_settings_validate_or_fail_with_a_library_error(domain: str, data: st.DataObject) -> None:
    _validate_or_clear_error(data.draw(settings_dicts(domain)))


def _small(data: dict[str, Any]) -> dict[str, Any]:
    """The generated settings on a run small enough to train in a second."""
    out = dict(data)
    out.update(agents=min(int(data.get("agents") or 6), 8) if isinstance(data.get("agents"), int) else data.get("agents", 6),
               episodes=1, envs=1, threads=1)  # fmt: skip
    out["eval"] = {**(data.get("eval") if isinstance(data.get("eval"), dict) else {}), "test_scenarios": 2,
                   "validation_scenarios": 1, "heuristics": False}  # fmt: skip
    domain_config = dict(data.get("domain_config") or {}) if isinstance(data.get("domain_config"), dict) else {}
    domain_config["horizon"] = 3
    out["domain_config"] = domain_config
    return out


def _run_or_clear_error(data: dict[str, Any], tmp_path: Any) -> None:
    from guidedmarl.experiment import run_experiment

    data = _small(data) | {"out": str(tmp_path / "run")}
    built = _validate_or_clear_error(data)
    if built is None:
        return
    try:
        run_experiment(built[0], force=True)
    except GuidedMarlError as exc:
        assert str(exc).strip()
        event(f"run stopped with {type(exc).__name__}")
        return
    event("run finished")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=settings_dicts("cloud"))
def test_generated_cloud_settings_train_or_fail_with_a_library_error(data: dict[str, Any], tmp_path: Any) -> None:
    _run_or_clear_error(data, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("domain", FUZZED_DOMAINS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_long_fuzz_of_runs(domain: str, data: st.DataObject, tmp_path: Any) -> None:
    _run_or_clear_error(data.draw(settings_dicts(domain)), tmp_path)


ACTIONS = st.one_of(
    st.lists(st.lists(st.integers(-3, 8), min_size=0, max_size=6), min_size=0, max_size=3),
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4), min_size=1, max_size=1),
    st.sampled_from([None, "0101", 3, 2.5, {}]),
    st.integers(-2, 6).map(lambda v: np.full((1, 4), v, dtype=np.int64)),
    st.integers(-2, 6).map(lambda v: torch.full((1, 4), v, dtype=torch.int64)),
    st.floats(width=32, allow_nan=True).map(lambda v: torch.full((1, 4), v)),
)


@settings(max_examples=150, deadline=None)
@given(actions=ACTIONS)
def test_env_step_accepts_good_actions_and_refuses_others_with_a_value_error(actions: Any) -> None:
    env = get_domain("cloud").from_config(4, {"horizon": 3, "warmup": 1}).make_env(1)
    env.reset([0])
    try:
        step = env.step(actions)
    except ValueError as exc:
        assert str(exc).strip()
        event("actions refused with ValueError")
        return
    event("actions accepted")
    assert torch.isfinite(step.reward).all()
