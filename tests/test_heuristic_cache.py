"""The heuristics' results are read back from the disk cache only for the same inputs and code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guidedmarl.config import RunConfig
from guidedmarl.experiment import run_experiment
from guidedmarl.heuristic_cache import cache_dir, cached_heuristics

SMALL_CLOUD = {"horizon": 6, "warmup": 2}


def _config(out: Path, **changes) -> RunConfig:
    data = {"domain": "cloud", "agents": 6, "episodes": 1, "threads": 1, "out": out, "domain_config": SMALL_CLOUD,
            "eval": {"test_scenarios": 3, "validation_scenarios": 2}} | changes  # fmt: skip
    return RunConfig.model_validate(data)


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_a_second_run_reads_the_same_heuristics_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GUIDEDMARL_CACHE_DIR", str(tmp_path / "cache"))
    run_experiment(_config(tmp_path / "a"))
    first = json.loads((tmp_path / "a" / "baselines.json").read_text())
    assert _summary(tmp_path / "a")["baselines_from_cache"] is False
    assert len(list((tmp_path / "cache" / "heuristics").glob("*.json"))) == 1
    run_experiment(_config(tmp_path / "b"))
    assert _summary(tmp_path / "b")["baselines_from_cache"] is True
    assert json.loads((tmp_path / "b" / "baselines.json").read_text()) == first
    # computing them again gives the cached numbers (the cache holds nothing a run would not)
    run_experiment(_config(tmp_path / "c", eval={"test_scenarios": 3, "validation_scenarios": 2,
                                                 "heuristics_cache": False}))  # fmt: skip
    assert _summary(tmp_path / "c")["baselines_from_cache"] is False
    assert json.loads((tmp_path / "c" / "baselines.json").read_text()) == first


@pytest.mark.parametrize(
    "change",
    [{"seed": 1}, {"agents": 7}, {"domain_config": {**SMALL_CLOUD, "horizon": 7}},
     {"eval": {"test_scenarios": 4, "validation_scenarios": 2}}],  # fmt: skip
    ids=["seed", "agents", "settings", "scenarios"],
)
def test_other_inputs_miss_the_cache(tmp_path: Path, monkeypatch, change: dict) -> None:
    monkeypatch.setenv("GUIDEDMARL_CACHE_DIR", str(tmp_path / "cache"))
    run_experiment(_config(tmp_path / "a"))
    run_experiment(_config(tmp_path / "b", **change))
    assert _summary(tmp_path / "b")["baselines_from_cache"] is False
    assert len(list((tmp_path / "cache" / "heuristics").glob("*.json"))) == 2


def test_a_corrupt_entry_is_recomputed_and_a_changed_code_fingerprint_misses(tmp_path: Path) -> None:
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"random": {"mean": -1.0, "std": 0.0, "returns": [-1.0], "info": {}}}

    desc = {"domain": "x", "code": "v1"}
    assert cached_heuristics(desc, ["random"], compute, tmp_path)[1] is False
    assert cached_heuristics(desc, ["random"], compute, tmp_path) == (compute(), True)
    (entry,) = (tmp_path / "heuristics").glob("*.json")
    entry.write_text("{not json")
    assert cached_heuristics(desc, ["random"], compute, tmp_path)[1] is False
    assert cached_heuristics(desc, ["random"], compute, tmp_path)[1] is True
    assert cached_heuristics({**desc, "code": "v2"}, ["random"], compute, tmp_path)[1] is False
    assert cached_heuristics(desc, ["random", "best_fit"], compute, tmp_path)[1] is False


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GUIDEDMARL_CACHE_DIR", "off")
    assert cache_dir() is None
    run_experiment(_config(tmp_path / "a"))
    run_experiment(_config(tmp_path / "b"))
    assert _summary(tmp_path / "b")["baselines_from_cache"] is False
    monkeypatch.delenv("GUIDEDMARL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "guidedmarl"
