"""The run's device: checked before any work, recorded, and followed by every tensor of a run.

The CUDA tests run where torch finds a CUDA device and are skipped (with the reason) elsewhere;
the device-independent checks run everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from guidedmarl import get_domain
from guidedmarl.cli import app
from guidedmarl.config import RunConfig, build_config
from guidedmarl.device import resolve_device
from guidedmarl.errors import ConfigError
from guidedmarl.experiment import build, run_experiment
from guidedmarl.runs import evaluate

runner = CliRunner()
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine (torch.cuda.is_available() is False)")
SMALL = {"horizon": 6, "warmup": 2}


def _config(tmp_path: Path, device: str, **extra: object) -> RunConfig:
    data = {"domain": "cloud", "agents": 6, "episodes": 2, "seed": 1, "out": str(tmp_path / device.replace(":", "-")),
            "device": device, "domain_config": SMALL, "eval": {"test_scenarios": 2, "validation_scenarios": 2}}  # fmt: skip
    return build_config(data | extra, "test")


@pytest.mark.parametrize("name", ["gpu", "cpu:0", "cuda:", "CUDA", ""])
def test_a_malformed_device_names_the_field(name: str) -> None:
    with pytest.raises(ConfigError, match="device: must be cpu, cuda or cuda:K"):
        build_config({"domain": "cloud", "device": name}, "test")


def test_the_default_is_cpu_and_it_is_recorded(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "cpu")
    assert RunConfig.model_fields["device"].default == "cpu"
    run_experiment(cfg)
    provenance = json.loads((cfg.out / "provenance.json").read_text())
    assert provenance["sessions"][-1]["device"] == "cpu"


def test_every_tensor_of_a_cpu_run_is_on_the_cpu(tmp_path: Path) -> None:
    domain, trainer = build(_config(tmp_path, "cpu"))
    assert domain.device == torch.device("cpu") and trainer.device == torch.device("cpu")
    tensors = [*trainer.actor.parameters(), *trainer.critic.parameters(), *trainer.value_norm.buffers()]
    assert {t.device.type for t in tensors} == {"cpu"}


def test_a_domain_refuses_a_device_it_does_not_support() -> None:
    with pytest.raises(ConfigError, match="domain 'power' runs on cpu only, not 'cuda'"):
        get_domain("power").from_config(None, {"case": "case30"}, "cuda")


def test_cloud_env_refuses_candidates_on_another_device_than_its_fleet() -> None:
    from guidedmarl_domains.cloud.env import CloudEnv

    domain = get_domain("cloud").from_config(6, SMALL)
    with pytest.raises(ValueError, match="candidates are on meta but the fleet is on cpu"):
        CloudEnv(1, domain.fleet, domain.candidates.to("meta"), domain.settings)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message of a machine without CUDA")
def test_cuda_on_a_machine_without_it_fails_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="finds no CUDA device on this machine"):
        resolve_device("cuda")
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--domain", "cloud", "--agents", "6", "--device", "cuda", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "use --device cpu" in result.output
    assert not out.exists()  # refused before the run folder was made


@needs_cuda
def test_a_cloud_run_on_cuda_keeps_every_tensor_there(tmp_path: Path) -> None:
    domain, trainer = build(_config(tmp_path, "cuda"))
    step = trainer.env.reset([0])
    assert {t.device.type for t in (step.obs, step.state, step.active, step.reward, step.done)} == {"cuda"}
    assert {p.device.type for p in trainer.actor.parameters()} == {"cuda"}
    ro = trainer.collect([0])
    assert ro.obs.device.type == "cuda" and ro.guidance is not None and ro.guidance.device.type == "cuda"
    metrics = trainer.update(ro, 0.0)
    assert all(v == v for v in metrics.values())


@needs_cuda
def test_a_cuda_run_finishes_and_is_scored_on_the_cpu(tmp_path: Path) -> None:
    result = run_experiment(_config(tmp_path, "cuda"))
    assert result.final_test_reward == result.final_test_reward  # finite, not NaN
    scored = evaluate(result.out, "final", device="cpu", heuristics=False)
    assert scored["device"] == "cpu" and len(scored["policy"]["returns"]) == 2
