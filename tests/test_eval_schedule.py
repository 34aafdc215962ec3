"""``eval.test = "chosen"``: the test scenarios are played for the chosen and final policies only,
and the summary's figures equal those of ``"every"``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from guidedmarl.config import RunConfig, build_config
from guidedmarl.errors import ConfigError
from guidedmarl.experiment import run_experiment
from guidedmarl.studies.grid.settings import ScaleSettings
from guidedmarl.studies.grid.study import cell_config

SMALL_CLOUD = {"horizon": 20, "warmup": 4}
# a step size this large makes the policy worse after its first updates, so the checkpoint chosen
# on validation is an early one and "chosen" must read it back from best.pt (asserted below)
UNSTABLE = {"learning_rate": 0.3, "update_epochs": 4}
SUMMARY_FIGURES = ("best_test_reward", "best_episode", "best_validation_reward", "final_test_reward",
                   "final_test_reward_other_mode", "initial_test_reward", "global_step")  # fmt: skip


def _config(out: Path, test: str, episodes: int = 5) -> RunConfig:
    return RunConfig.model_validate({
        "domain": "cloud", "agents": 10, "episodes": episodes, "seed": 3, "threads": 1, "out": out,
        "domain_config": SMALL_CLOUD, "ppo": UNSTABLE,
        "eval": {"test_scenarios": 4, "validation_scenarios": 3, "heuristics": False, "test": test},
    })  # fmt: skip


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("schedule")
    run_experiment(_config(root / "every", "every"))
    run_experiment(_config(root / "chosen", "chosen"))
    return root / "every", root / "chosen"


def test_chosen_gives_the_summary_figures_of_every(both: tuple[Path, Path]) -> None:
    every, chosen = (_summary(p) for p in both)
    assert 1 <= every["best_episode"] < every["episodes"], "the test needs a chosen checkpoint before the last episode"
    assert every["best_test_reward"] != every["final_test_reward"]
    for key in SUMMARY_FIGURES:
        assert chosen[key] == every[key], key
    assert chosen["test_scenarios_played"] == "chosen" and every["test_scenarios_played"] == "every"


def test_chosen_plays_validation_only_during_training(both: tuple[Path, Path]) -> None:
    every_rows, chosen_rows = (json.loads((p / "metrics.json").read_text()) for p in both)
    assert [("eval/test_reward" in r) for r in chosen_rows] == [True] + [False] * (len(chosen_rows) - 1)
    assert all("eval/test_reward" in r for r in every_rows)
    # the validation curve, and the training itself, are the same in both
    for a, b in zip(every_rows, chosen_rows, strict=True):
        assert a["eval/validation_reward"] == b["eval/validation_reward"]
        assert a.get("train/episodic_return") == b.get("train/episodic_return")
    assert _summary(both[1])["best_test_reward_on_test"] is None
    assert _summary(both[0])["best_test_reward_on_test"] >= _summary(both[0])["best_test_reward"]


def test_the_final_weights_are_back_in_place_after_scoring_the_chosen_ones(both: tuple[Path, Path]) -> None:
    """final.pt is written before the chosen weights are scored; best.pt and final.pt differ."""
    best = torch.load(both[1] / "best.pt", weights_only=True)["actor"]
    final = torch.load(both[1] / "final.pt", weights_only=True)["actor"]
    final_every = torch.load(both[0] / "final.pt", weights_only=True)["actor"]
    assert any(not torch.equal(best[k], final[k]) for k in final)
    assert all(torch.equal(final[k], final_every[k]) for k in final)


def test_a_resumed_chosen_run_reads_the_chosen_weights_from_best_pt(both: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "resumed"

    def stop_after_third(episode: int, row: dict[str, float]) -> None:
        if episode + 1 == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(_config(out, "chosen"), on_episode=stop_after_third)
    run_experiment(_config(out, "chosen"), resume=True)
    resumed, chosen = _summary(out), _summary(both[1])
    for key in SUMMARY_FIGURES:
        assert resumed[key] == chosen[key], key


def test_chosen_without_validation_scenarios_is_a_config_error() -> None:
    data = {"domain": "cloud", "eval": {"test": "chosen", "validation_scenarios": 0}}
    with pytest.raises(ConfigError, match=r"eval\.validation_scenarios >= 1"):
        build_config(data, "test settings")


def test_a_study_refuses_runs_that_do_not_test_every_evaluation() -> None:
    settings = ScaleSettings.model_validate(
        {"domain": "cloud", "agents": [6], "run_config": {"eval": {"test": "chosen"}}}
    )
    arm = settings.arms()[0]
    with pytest.raises(ConfigError, match="eval.test = 'chosen'.*'every'"):
        cell_config(settings, arm, 6, 0)
