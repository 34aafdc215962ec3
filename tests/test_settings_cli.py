"""`guidedmarl config show`, the example config files and `--version`."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from guidedmarl.cli import app
from guidedmarl.config import build_config
from guidedmarl.domain import get_domain

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.yaml"))
TINY = {"cloud": ["--set", "domain_config.horizon=5", "--set", "domain_config.warmup=2", "--agents", "6"],
        "power": ["--set", "domain_config.horizon=3"]}  # fmt: skip
FAST = ["--episodes", "1", "--threads", "1", "--quiet", "--set", "eval.test_scenarios=2",
        "--set", "eval.validation_scenarios=2", "--set", "eval.heuristics=false"]  # fmt: skip


def test_config_show_lists_every_setting_with_description_and_range() -> None:
    result = runner.invoke(app, ["config", "show", "--domain", "cloud"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "# Adam step size for actor and critic (> 0, <= 1)\n  learning_rate: 0.002" in text
    assert "# alpha at the first training episode (>= 0.0, <= 1.0)\n      start: 0.9" in text
    data = yaml.safe_load(text)
    cfg = build_config(data)  # every key is a real setting, every default valid
    assert cfg.domain == "cloud" and cfg.learner.estimator.kind == "dgpg"
    assert cfg.algo == "dgpg_exact" and cfg.learner.estimator.weight == "exact_difference"  # cloud's default
    defaults = get_domain("cloud").settings_model().model_dump(mode="json")
    assert data["domain_config"] == defaults  # the domain's settings, resolved
    assert "out" not in data  # the default folder is named from domain, algo, N and seed


def test_config_show_without_domain_and_for_another_preset() -> None:
    plain = runner.invoke(app, ["config", "show"])
    assert plain.exit_code == 0 and yaml.safe_load(plain.output)["domain"] is None
    mappo = yaml.safe_load(runner.invoke(app, ["config", "show", "--algo", "mappo", "--domain", "power"]).output)
    assert mappo["learner"]["estimator"]["kind"] == "shared_return"
    bad = runner.invoke(app, ["config", "show", "--domain", "clodu"])
    assert bad.exit_code == 2 and "did you mean 'cloud'" in bad.output


def test_config_show_output_runs(tmp_path: Path) -> None:
    file = tmp_path / "my_run.yaml"
    file.write_text(runner.invoke(app, ["config", "show", "--domain", "cloud"]).output)
    result = runner.invoke(app, ["run", "--config", str(file), "--out", str(tmp_path / "run"), *TINY["cloud"], *FAST])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=[p.stem for p in EXAMPLE_CONFIGS])
def test_example_configs_load_and_run(path: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    cfg = build_config(data, f"settings from {path}")
    assert cfg.domain == path.stem
    get_domain(cfg.domain).settings_model.model_validate(cfg.domain_config)  # domain settings valid too
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--config", str(path), "--out", str(out), *TINY.get(path.stem, []), *FAST])
    assert result.exit_code == 0, result.output
    assert (out / "final.pt").is_file()


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=[p.stem for p in EXAMPLE_CONFIGS])
def test_example_configs_are_what_config_show_prints_today(path: Path) -> None:
    """The shipped files list every setting of this version (regenerate: guidedmarl config show
    --domain NAME > examples/configs/NAME.yaml)."""
    shown = runner.invoke(app, ["config", "show", "--domain", path.stem])
    assert shown.exit_code == 0, shown.output
    assert path.read_text() == shown.output, f"{path} is stale: regenerate it with guidedmarl config show"


def test_config_show_names_the_domains_default_preset() -> None:
    cloud = runner.invoke(app, ["config", "show", "--domain", "cloud"]).output
    power = runner.invoke(app, ["config", "show", "--domain", "power"]).output
    assert "learner preset dgpg_exact." in cloud and yaml.safe_load(cloud)["algo"] == "dgpg_exact"
    assert "learner preset dgpg." in power and yaml.safe_load(power)["algo"] == "dgpg"


def test_every_shipped_domain_has_an_example_config() -> None:
    assert {p.stem for p in EXAMPLE_CONFIGS} >= {"cloud", "power"}


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"guidedmarl {metadata.version('guidedmarl')}"
