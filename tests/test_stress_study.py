"""`guidedmarl study stress`: files, resuming without re-running, heuristics once, CLI."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from guidedmarl.cli import app
from guidedmarl.studies import cells
from guidedmarl.studies.stress import StressSettings, run_stress_study
from guidedmarl.studies.stress import report as stress_report
from guidedmarl.studies.stress import study as stress

runner = CliRunner()
FILES = ("stress.md", "stress.csv", "stress.json", "stress_curves.png", "stress_variance.png", "command.txt")
TINY_RUN = {"domain_config": {"horizon": 6, "warmup": 2}, "eval": {"test_scenarios": 4}}


def _tiny(out: Path, variants: list[str]) -> StressSettings:
    return StressSettings(
        domain="cloud", variants=variants, agents=6, episodes=2, seeds=[0], variance_agents=[4, 8], rollouts=8,
        scenarios=2, bootstrap=10, threads=1, out=out, run_config=TINY_RUN,
    )  # fmt: skip


class _Counter:
    """Wraps the study's training, variance and heuristics entry points; records what was executed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs: list = []
        self.variance: list = []
        self.heuristics: list = []
        train, variance, heuristics = stress.run_training, stress.run_variance_study, cells.evaluate_heuristics_cell

        def counted_train(cfg, **kwargs):
            self.runs.append(cfg)
            return train(cfg, **kwargs)

        def counted_variance(settings, *args, **kwargs):
            self.variance.append(settings)
            return variance(settings, *args, **kwargs)

        def counted_heuristics(spec, folder):
            self.heuristics.append(spec.seed)
            return heuristics(spec, folder)

        monkeypatch.setattr(stress, "run_training", counted_train)
        monkeypatch.setattr(stress, "run_variance_study", counted_variance)
        monkeypatch.setattr(cells, "evaluate_heuristics_cell", counted_heuristics)


def _no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip drawing (figures are checked once; keeps the tests fast)."""
    monkeypatch.setattr(stress_report, "plot_curves", lambda *a, **k: None)
    monkeypatch.setattr(stress_report, "plot_variance", lambda *a, **k: None)
    monkeypatch.setattr(sys.modules["guidedmarl.studies.variance.report"], "plot_variance", lambda *a, **k: None)
    monkeypatch.setattr(sys.modules["guidedmarl.run_loop"], "plot_learning_curve", lambda *a, **k: None)


def test_stress_study_writes_every_file_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "stress"
    calls = _Counter(monkeypatch)
    result = run_stress_study(_tiny(out, ["exact", "rounded:step=0.5"]))
    for name in FILES:
        assert (out / name).is_file(), name
    for name in ("stress_curves.png", "stress_variance.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    # 2 variance studies; DG-PG per variant plus MAPPO; heuristics evaluated once (per seed), by no run
    assert len(calls.variance) == 2 and len(calls.runs) == 3
    assert [c.algo for c in calls.runs] == ["dgpg", "dgpg", "mappo"]
    assert calls.heuristics == [0] and [c.eval.heuristics for c in calls.runs] == [False, False, False]
    # fairness: the runs differ only in the learner (its model) and their folder
    dumps = [c.model_dump(mode="json") for c in calls.runs]
    for d in dumps:
        d.pop("out"), d.pop("learner"), d.pop("algo")
    assert dumps[0] == dumps[1] == dumps[2]
    assert calls.runs[1].learner.estimator.surrogate is not None and calls.runs[1].learner.estimator.surrogate.step == 0.5
    assert calls.runs[0].learner.estimator.surrogate is None and calls.variance[1].surrogate == {"kind": "rounded", "step": 0.5}
    assert result.executed == {"variance": 2, "learning": 3}

    rows = list(csv.DictReader((out / "stress.csv").open()))
    assert [(r["variant"], r["learner"]) for r in rows] == [("exact", "dgpg"), ("rounded step=0.5", "dgpg"),
                                                           ("MAPPO", "mappo")]  # fmt: skip
    assert float(rows[0]["best_diff_mean"]) == 0.0 and rows[0]["seeds"] == "1"
    assert rows[0]["best_diff_std"] == "nan"  # one seed: the spread is not defined (studies.stats)
    assert rows[0]["guidance_variance_slope"] not in ("", "nan")
    doc = json.loads((out / "stress.json").read_text())
    assert set(doc["variance"]) == {"exact", "rounded step=0.5"}
    assert set(doc["heuristics"]["0"]) >= {"random", "best_fit"}
    assert 0.0 < doc["agreement"]["rounded step=0.5"]["trained"]["zero_fraction"] <= 1.0
    assert all(len(c["curve"]) == 3 for c in doc["cells"])  # episode 0 (untrained) + 2 episodes
    md = (out / "stress.md").read_text()
    assert "| DG-PG, rounded step=0.5 |" in md and "| MAPPO (no guidance) |" in md
    assert "floor = `random`, target = `best_fit`" in md and "2 % band" in md  # the domain's floor and target
    assert "cpu_count:" in (out / "command.txt").read_text()

    _no_figures(monkeypatch)  # the figures are checked above

    # resume: nothing is re-run, run folders are untouched, the outputs are the same
    marker = out / "runs" / "dgpg-exact-s0" / "cell.json"
    stamps = {p: p.stat().st_mtime_ns for p in (marker, out / "runs" / "mappo-s0" / "final.pt")}
    again = run_stress_study(_tiny(out, ["exact", "rounded:step=0.5"]))
    assert len(calls.variance) == 2 and len(calls.runs) == 3 and again.executed == {"variance": 0, "learning": 0}
    assert calls.heuristics == [0]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert list(csv.DictReader((out / "stress.csv").open())) == rows
    calls_log = json.loads((out / "stress.json").read_text())["calls"]  # the record of the call that did the work
    assert [c["executed"]["learning"] for c in calls_log] == [3, 0]
    assert "calls into this folder" in (out / "command.txt").read_text()

    # a new variant runs only its own cells; the heuristics are not evaluated again
    run_stress_study(_tiny(out, ["exact", "rounded:step=0.5", "biased:beta=1"]))
    assert len(calls.variance) == 3 and len(calls.runs) == 4 and calls.heuristics == [0]
    assert calls.runs[-1].learner.estimator.surrogate.beta == 1.0 and not calls.runs[-1].eval.heuristics
    # changed settings re-run the affected cells only, and say which field changed
    said: list[str] = []
    changed = _tiny(out, ["exact"]).model_copy(
        update={"reference": None, "run_config": {**TINY_RUN, "ppo": {"learning_rate": 1e-3}}}
    )
    run_stress_study(changed, on_progress=said.append)
    assert len(calls.variance) == 4 and len(calls.runs) == 5  # the variance part sees ppo settings too
    assert calls.runs[-1].ppo.learning_rate == 1e-3 and calls.heuristics == [0]  # heuristics: no ppo settings
    assert any("settings changed" in m and "ppo.learning_rate: 0.002 -> 0.001" in m for m in said)


def test_heuristics_are_evaluated_even_when_every_run_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s"
    settings = _tiny(out, ["exact"]).model_copy(update={"variance_agents": [], "reference": None})
    first = run_stress_study(settings)
    for path in (out / "heuristics").rglob("cell.json"):
        path.unlink()
    calls = _Counter(monkeypatch)
    again = run_stress_study(settings)
    assert again.executed == {"variance": 0, "learning": 0} and calls.runs == [] and calls.heuristics == [0]
    assert again.heuristics == first.heuristics
    assert (out / "stress_variance.png").is_file()  # written (empty) even without a variance part


def test_episodes_to_converge_skips_episode_zero_and_missing_evaluations(tmp_path: Path) -> None:
    from guidedmarl.convergence import ConvergenceCriterion
    from guidedmarl.studies.base import converged_at

    def episodes_to_converge(curve: list, floor: float, target: float) -> int | None:
        return converged_at(range(len(curve)), curve, floor, target, ConvergenceCriterion())

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
    cases = [
        ({"variants": ["exact", "none"]}, "each variant at most once"),
        ({"variants": ["biased:beta=-1"]}, "biased.beta"),
        ({"variants": []}, "at least 1 item"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"reference": "dgpg"}, "reference"),
        ({"reference": "dgpg_exact"}, "mappo"),
        ({"rollouts": 7}, "multiple of scenarios"),
        ({"floor": "random", "target": "random"}, "different heuristics"),
        ({"tolerance": 0.0}, "(0, 1]"),
        ({"variance_agents": [-1]}, "variance_agents"),
    ]
    for data, message in cases:
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("[", r"\[")):
            StressSettings(domain="cloud", **data)
    assert StressSettings(domain="cloud", reference="None").reference is None
    assert StressSettings(domain="cloud", reference="IPPO").reference == "ippo"
    assert StressSettings(domain="cloud", variance_agents=[0]).variance_agents == []


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
    _no_figures(monkeypatch)  # drawn and checked above
    again = runner.invoke(app, [*args, "--out", str(out)])
    assert again.exit_code == 0 and "0 training runs executed" in again.output

    bad = runner.invoke(app, ["study", "stress", "--variant", "noisy:sigma=-1", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "noisy.sigma" in bad.output
    bad = runner.invoke(app, ["study", "stress", "--domain", "cloud", "--target", "oracle", "--agents", "6",
                              "--variance-agents", "0", "--set", "domain_config.horizon=3", "--out", str(tmp_path / "y")])
    assert bad.exit_code == 2 and "convergence needs the heuristics ['oracle']" in bad.output
    assert not (tmp_path / "y").exists()


def test_guidance_agreement_uses_the_policy_mean_for_continuous_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from guidedmarl import Domain, RunConfig, register_domain

    path = Path(__file__).with_name("test_continuous_guidance.py")
    spec = importlib.util.spec_from_file_location("guidedmarl_test_steer_stress", path)
    assert spec is not None and spec.loader is not None
    steer = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = steer
    spec.loader.exec_module(steer)

    class SteerDomain(Domain):
        name = "steer_stress_test"

        def make_env(self, num_envs: int):  # noqa: ANN201
            return steer.SteerEnv(num_envs)

        def make_model(self):  # noqa: ANN201
            return steer.SteerModel()

    register_domain(SteerDomain, replace=True)
    seen: list = []
    real = stress.guidance_weights

    def recording(model, actions, context, exact_difference=False, mean_action=None):  # noqa: ANN001, ANN202
        seen.append(mean_action)
        return real(model, actions, context, exact_difference, mean_action=mean_action)

    monkeypatch.setattr(stress, "guidance_weights", recording)
    cfg = RunConfig(domain="steer_stress_test", agents=steer.N)
    got = stress.guidance_agreement(cfg, ["exact", "noisy:sigma=1.0"], steps=steer.HORIZON, envs=4)
    assert len(seen) == 3 * steer.HORIZON and all(m is not None and m.shape == (4, steer.N, 1) for m in seen)
    assert got["exact"]["corr"] == pytest.approx(1.0) and got["exact"]["samples"] == 4 * steer.N * steer.HORIZON
    assert -1.0 <= got["noisy sigma=1"]["corr"] < 0.9999  # a noisy reference changes the weights
