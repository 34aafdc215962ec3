"""The memory a run needs is estimated and checked against the machine before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from guidedmarl import experiment
from guidedmarl.config import RunConfig
from guidedmarl.errors import ConfigError
from guidedmarl.experiment import build, run_experiment, run_memory_estimate
from guidedmarl.memory import GIB, MemoryEstimate, available_bytes, check_memory


def _config(tmp_path: Path, agents: int = 6, **extra: object) -> RunConfig:
    return RunConfig(domain="cloud", agents=agents, episodes=1, out=tmp_path / "run",
                     domain_config={"horizon": 4, "warmup": 1},
                     eval={"test_scenarios": 2, "validation_scenarios": 2, "heuristics": False}, **extra)  # fmt: skip


def test_the_estimate_grows_with_agents_and_environments(tmp_path: Path) -> None:
    totals = {}
    for agents, envs in ((100, 1), (1000, 1), (1000, 4)):
        cfg = _config(tmp_path, agents, envs=envs)
        estimate = run_memory_estimate(cfg, *build(cfg))
        assert set(estimate.parts) == {"base", "rollout", "update", "environments"}
        totals[agents, envs] = estimate.total - estimate.parts["base"]
    assert totals[1000, 1] == pytest.approx(10 * totals[100, 1], rel=0.05)  # linear in N
    assert totals[1000, 4] > totals[1000, 1]


def test_a_run_beyond_the_machine_is_refused_before_any_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(experiment, "available_bytes", lambda: 2**20)  # a machine with 1 MiB free
    cfg = _config(tmp_path)
    with pytest.raises(ConfigError, match=r"agents: this run needs about .* GiB .* the machine has 0\.0 GiB available"):
        run_experiment(cfg)
    assert not (cfg.out / "config.yaml").exists()
    result = run_experiment(_config(tmp_path, memory_check=False))  # the user's override
    assert result.out == cfg.out


def test_a_million_agents_is_estimated_far_beyond_a_laptop(tmp_path: Path) -> None:
    cfg = RunConfig(domain="cloud", agents=1_000_000, out=tmp_path / "big")
    estimate = run_memory_estimate(cfg, *build(cfg))
    assert estimate.total > 100 * GIB
    with pytest.raises(ConfigError, match="lower --agents"):
        check_memory(estimate, 24 * GIB)


def test_check_passes_when_it_fits_or_nothing_is_known() -> None:
    estimate = MemoryEstimate({"base": GIB})
    check_memory(estimate, 2 * GIB)
    check_memory(estimate, None)
    assert estimate.describe() == "1.0 GiB (base 1.0)"


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   2048 kB\n")
    assert available_bytes(meminfo) == 2048 * 1024
    assert available_bytes(tmp_path / "missing") is None
