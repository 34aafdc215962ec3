"""`guidedmarl study stress`: files, resuming without re-running, heuristics once, CLI."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guidedmarl.cli import app
from guidedmarl.config import ConfigError
from guidedmarl.studies import stress
from guidedmarl.studies.stress import StressSettings, episodes_to_converge, run_stress_study

runner = CliRunner()
FILES = ("stress.md", "stress.csv", "stress.json", "stress_curves.png", "stress_variance.png", "command.txt")
TINY_RUN = {"domain_config": {"horizon": 6, "warmup": 2}, "eval": {"test_scenarios": 4}}


def _tiny(out: Path, variants: list[str]) -> StressSettings:
    return StressSettings(
        domain="cloud", variants=variants, agents=6, episodes=2, seeds=[0], variance_agents=[4, 8], rollouts=8,
        scenarios=2, bootstrap=10, threads=1, out=out, run_config=TINY_RUN,
    )  # fmt: skip


class _Counter:
    """Wraps the study's training and variance entry points; records what was executed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs: list = []
        self.variance: list = []
        train, variance = stress.run_training, stress.run_variance_study

        def counted_train(cfg):
            self.runs.append(cfg)
            return train(cfg)

        def counted_variance(settings, *args, **kwargs):
            self.variance.append(settings)
            return variance(settings, *args, **kwargs)

        monkeypatch.setattr(stress, "run_training", counted_train)
        monkeypatch.setattr(stress, "run_variance_study", counted_variance)


def test_stress_study_writes_every_file_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "stress"
    calls = _Counter(monkeypatch)
    result = run_stress_study(_tiny(out, ["exact", "rounded:step=0.5"]))
    for name in FILES:
        assert (out / name).is_file(), name
    for name in ("stress_curves.png", "stress_variance.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    # 2 variance studies; DG-PG per variant plus MAPPO; heuristics evaluated in exactly one run
    assert len(calls.variance) == 2 and len(calls.runs) == 3
    assert [c.algo for c in calls.runs] == ["dgpg", "dgpg", "mappo"]
    assert [c.eval.heuristics for c in calls.runs] == [True, False, False]
    assert calls.runs[1].learner.estimator.surrogate is not None and calls.runs[1].learner.estimator.surrogate.step == 0.5
    assert calls.runs[0].learner.estimator.surrogate is None and calls.variance[1].surrogate == {"kind": "rounded", "step": 0.5}
    assert result.executed == {"variance": 2, "learning": 3}

    rows = list(csv.DictReader((out / "stress.csv").open()))
    assert [(r["variant"], r["learner"]) for r in rows] == [("exact", "dgpg"), ("rounded step=0.5", "dgpg"),
                                                           ("MAPPO", "mappo")]  # fmt: skip
    assert float(rows[0]["best_diff_mean"]) == 0.0 and rows[0]["seeds"] == "1"
    assert rows[0]["guidance_variance_slope"] not in ("", "nan")
    doc = json.loads((out / "stress.json").read_text())
    assert set(doc["variance"]) == {"exact", "rounded step=0.5"}
    assert set(doc["heuristics"]["0"]) >= {"random", "best_fit"}
    assert 0.0 < doc["agreement"]["rounded step=0.5"]["trained"]["zero_fraction"] <= 1.0
    assert all(len(c["curve"]) == 3 for c in doc["cells"])  # episode 0 (untrained) + 2 episodes
    md = (out / "stress.md").read_text()
    assert "| DG-PG, rounded step=0.5 |" in md and "| MAPPO (no guidance) |" in md
    assert "cpu_count:" in (out / "command.txt").read_text()

    # the figures are checked above; skip drawing them from here on (keeps the test fast)
    monkeypatch.setattr(stress, "plot_curves", lambda *a, **k: None)
    monkeypatch.setattr(stress, "plot_variance", lambda *a, **k: None)
    monkeypatch.setattr(sys.modules["guidedmarl.studies.variance"], "plot_variance", lambda *a, **k: None)
    monkeypatch.setattr(sys.modules["guidedmarl.experiment"], "plot_learning_curve", lambda *a, **k: None)

    # resume: nothing is re-run, run folders are untouched, the outputs are the same
    marker = out / "runs" / "dgpg-exact-s0" / "stress_cell.json"
    stamps = {p: p.stat().st_mtime_ns for p in (marker, out / "runs" / "mappo-s0" / "final.pt")}
    again = run_stress_study(_tiny(out, ["exact", "rounded:step=0.5"]))
    assert len(calls.variance) == 2 and len(calls.runs) == 3 and again.executed == {"variance": 0, "learning": 0}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert list(csv.DictReader((out / "stress.csv").open())) == rows
    calls_log = json.loads((out / "stress.json").read_text())["calls"]  # the record of the call that did the work
    assert [c["executed"]["learning"] for c in calls_log] == [3, 0]
    assert "calls into this folder" in (out / "command.txt").read_text()

    # a new variant runs only its own cells; its run does not evaluate the heuristics again
    run_stress_study(_tiny(out, ["exact", "rounded:step=0.5", "biased:beta=1"]))
    assert len(calls.variance) == 3 and len(calls.runs) == 4
    assert calls.runs[-1].learner.estimator.surrogate.beta == 1.0 and not calls.runs[-1].eval.heuristics
    # changed settings re-run the affected cells only (here: every learning run, no variance study)
    changed = replace(_tiny(out, ["exact"]), reference=None, run_config={**TINY_RUN, "ppo": {"learning_rate": 1e-3}})
    run_stress_study(changed)
    assert len(calls.variance) == 4 and len(calls.runs) == 5  # the variance part sees ppo settings too
    assert calls.runs[-1].ppo.learning_rate == 1e-3


def test_heuristics_are_evaluated_even_when_every_run_is_reused(tmp_path: Path) -> None:
    out = tmp_path / "s"
    settings = replace(_tiny(out, ["exact"]), variance_agents=[], reference=None)
    first = run_stress_study(settings)
    for path in (out / "heuristics").rglob("stress_cell.json"):
        path.unlink()
    cell_path = out / "runs" / "dgpg-exact-s0" / "stress_cell.json"
    cell = json.loads(cell_path.read_text())
    assert cell.pop("baselines")  # the run that evaluated them; now no stored run holds them
    cell_path.write_text(json.dumps(cell))
    again = run_stress_study(settings)
    assert again.executed == {"variance": 0, "learning": 0}
    assert again.heuristics == first.heuristics
    assert (out / "stress_variance.png").is_file()  # written (empty) even without a variance part


def test_episodes_to_converge_skips_episode_zero_and_missing_evaluations() -> None:
    # floor -100, target 0: converged at the first evaluation from which the 3-average stays put
    curve = [-5000.0, -100.0, -10.0, -5.0, -5.0, -5.0, -5.0]
    assert episodes_to_converge(curve, -100.0, 0.0) == 4
    # episode 0 is never part of the curve, however bad it is
    assert episodes_to_converge([-1e9, -5.0, -5.0, -5.0], -100.0, 0.0) == 1
    # unevaluated episodes (None) are skipped; the result is an episode number
    assert episodes_to_converge([-900.0, None, -5.0, None, -5.0, None, -5.0], -100.0, 0.0) == 2
    assert episodes_to_converge([-900.0, -90.0, -95.0, -92.0], -100.0, 0.0) is None  # quality gate
    assert episodes_to_converge([-900.0, -5.0], -100.0, 0.0) is None  # shorter than the window


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="each variant at most once"):
        StressSettings(variants=["exact", "none"]).check()
    with pytest.raises(ConfigError, match="biased.beta"):
        StressSettings(variants=["biased:beta=-1"]).check()
    with pytest.raises(ConfigError, match="seeds"):
        StressSettings(seeds=[0, 0]).check()
    with pytest.raises(ConfigError, match="reference"):
        StressSettings(reference="dgpg").check()
    with pytest.raises(ConfigError, match="multiple of scenarios"):
        StressSettings(rollouts=7).check()


def test_cli_study_stress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cli"
    args = ["study", "stress", "--domain", "cloud", "--agents", "6", "--episodes", "2", "--seeds", "0"]
    args += ["--variant", "exact;noisy:sigma=0.3", "--reference", "none", "--variance-agents", "0"]
    args += ["--rollouts", "8", "--scenarios", "2", "--bootstrap", "5", "--threads", "1"]
    args += ["--set", "domain_config.horizon=6", "--set", "domain_config.warmup=2", "--set", "eval.test_scenarios=4"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in FILES:
        assert (out / name).is_file(), name
    assert "DG-PG, noisy sigma=0.3" in result.output and "2 training runs executed" in result.output
    text = (out / "command.txt").read_text()
    assert "--variant exact --variant noisy:sigma=0.3" in text and "--variance-agents 0" in text
    assert not (out / "variance").exists()  # 0: no variance part
    monkeypatch.setattr(stress, "plot_curves", lambda *a, **k: None)  # drawn and checked above
    monkeypatch.setattr(stress, "plot_variance", lambda *a, **k: None)
    again = runner.invoke(app, [*args, "--out", str(out)])
    assert again.exit_code == 0 and "0 training runs executed" in again.output

    bad = runner.invoke(app, ["study", "stress", "--variant", "noisy:sigma=-1", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "noisy.sigma" in bad.output
    bad = runner.invoke(app, ["study", "stress", "--target", "oracle", "--agents", "6", "--variance-agents", "0",
                              "--set", "domain_config.horizon=3", "--out", str(tmp_path / "y")])  # fmt: skip
    assert bad.exit_code == 2 and "target heuristic 'oracle'" in bad.output
