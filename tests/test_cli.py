"""The command line: a short cloud run writes its files; bad input fails with a clear message."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from guidedmarl.cli import app
from guidedmarl_domains.cloud.rules import HEURISTICS

runner = CliRunner()

SMALL = ["--set", "domain_config.horizon=8", "--set", "domain_config.warmup=4", "--set", "eval.test_scenarios=3"]


def test_run_writes_config_metrics_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["run", "--domain", "cloud", "--agents", "6", "--episodes", "2", "--seed", "3", "--out", str(out), "--quiet", *SMALL]
    )
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "")
    for name in ("config.yaml", "metrics.csv", "metrics.json", "summary.json", "baselines.json", "learning_curve.png"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(float(r["episode"])) for r in rows] == [0, 1, 2]  # 0: the untrained policy
    names = {"train/episodic_return", "train/value_loss", "train/approx_kl", "train/clipfrac", "train/explained_variance"}
    names |= {"time/SPS", "time/agent_steps_per_second", "eval/test_reward", "global_step", "agent_steps"}
    assert names <= set(rows[1])
    assert [int(float(r["global_step"])) for r in rows] == [0, 8, 16]  # environment steps: horizon 8, one env
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["agents"] == 6 and config["seed"] == 3 and config["domain_config"]["horizon"] == 8
    assert config["domain_config"]["reference_layer"] == "waterfill"  # defaults resolved
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["baselines"]) == set(HEURISTICS)  # every rule of the domain, evaluated on the test scenarios
    assert summary["peak_rss_mib"] > 100  # this process's peak so far (MiB): Python with torch is above 100
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_config_file_is_validated_and_flags_override_it(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('domain = "cloud"\nalgo = "mappo"\nagents = 5\nepisodes = 1\n[domain_config]\nhorizon = 6\nwarmup = 2\n[eval]\ntest_scenarios = 2\n')
    out = tmp_path / "from_file"
    result = runner.invoke(app, ["run", "--config", str(cfg), "--agents", "4", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["algo"] == "mappo" and resolved["agents"] == 4
    # the written config runs again as it is
    again = runner.invoke(app, ["run", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "again"), "--quiet"])
    assert again.exit_code == 0, again.output


def test_bad_values_name_the_field_and_range(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--domain", "cloud", "--agents", "0", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "agents: Input should be greater than or equal to 1" in result.output
    result = runner.invoke(app, ["run", "--domain", "cloud", "--algo", "mapo", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "algo: unknown learner preset 'mapo' (did you mean 'mappo'?)" in result.output
    result = runner.invoke(app, ["run", "--domain", "cloud", "--set", "ppo.learning_rate=-1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "ppo.learning_rate: Input should be greater than 0" in result.output


def test_bad_domain_settings_and_unknown_domain(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--domain", "cloud", "--set", "domain_config.candidates=0", "--episodes", "1", "--out", str(tmp_path / "x"), "--quiet"])
    assert result.exit_code != 0 and "candidates: Input should be greater than or equal to 1" in result.output
    result = runner.invoke(app, ["run", "--domain", "nope", "--out", str(tmp_path / "x"), "--quiet"])
    assert result.exit_code != 0 and "unknown domain 'nope'" in result.output
    # a domain that fixes N: a wrong --agents is a usage error (exit 2) naming the right N
    result = runner.invoke(app, ["run", "--domain", "power", "--agents", "50", "--out", str(tmp_path / "p"), "--quiet"])
    assert result.exit_code == 2 and "--agents 6" in result.output


def test_missing_or_malformed_config_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--config", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2 and "config file not found" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents: [1, 2\n")
    result = runner.invoke(app, ["run", "--config", str(bad)])
    assert result.exit_code == 2 and "cannot parse" in result.output


def test_domains_command_lists_cloud() -> None:
    result = runner.invoke(app, ["domains"])
    assert result.exit_code == 0 and "cloud" in result.output
