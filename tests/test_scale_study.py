"""`guidedmarl study scale` / `study alpha`: grid, resume, fairness, table, plots, marl-eval export, CLI."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

import guidedmarl.experiment
from guidedmarl.config import ConfigError
from guidedmarl.convergence import ConvergenceCriterion
from guidedmarl.domain import get_domain
from guidedmarl.errors import StudyError
from guidedmarl.studies.base import converged_at, floor_target
from guidedmarl.studies.cli import fail
from guidedmarl.studies.grid import AlphaSettings, ScaleSettings, run_alpha_study, run_scale_study
from guidedmarl.studies.grid.cli import register
from guidedmarl.studies.marl_eval import MarlEvalFormatError, RunCurve, build_marl_eval, validate_marl_eval

runner = CliRunner()
CLOUD_SMALL = {"domain_config": {"horizon": 6, "warmup": 2}, "eval": {"test_scenarios": 8}}
BINS_SMALL = {"domain_config": {"horizon": 3}, "eval": {"test_scenarios": 2}}
FILES = ("scale.md", "scale.csv", "runs.csv", "scale.json", "episodes_to_converge.png", "marl_eval.json", "command.txt")


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    study = typer.Typer()
    register(study, fail)
    app.add_typer(study, name="study")
    return app


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace guidedmarl.experiment.run_experiment by a wrapper that counts calls (cells actually run)."""
    calls: list[int] = []
    real = guidedmarl.experiment.run_experiment

    def counted(cfg, *args, **kwargs):
        calls.append(cfg.agents)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(guidedmarl.experiment, "run_experiment", counted)
    return calls


def _cells(out: Path) -> dict[tuple[str, int, int], dict]:
    doc = json.loads((out / "scale.json").read_text())
    return {(c["arm"], c["agents"], c["seed"]): c for c in doc["cells"]}


def test_cloud_scale_study_outputs_fairness_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "scale"
    settings = ScaleSettings(
        domain="cloud", agents=[6, 4], seeds=[0, 1], episodes=2, baseline_budget=1.5, run_config=CLOUD_SMALL,
        threads=1, out=out,
    )  # fmt: skip
    calls = _counting(monkeypatch)
    result = run_scale_study(settings)
    assert len(calls) == 12 and result.cells_run == 12 and result.cells_reused == 0
    for name in (*FILES, "curves_N4.png", "curves_N6.png"):
        assert (out / name).is_file(), name
    for name in ("curves_N4.png", "curves_N6.png", "episodes_to_converge.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"

    # every cell is a run directory; arms differ only in algo and episode budget (2 vs round(2 x 1.5) = 3)
    configs = {}
    for arm in ("dgpg", "mappo", "ippo"):
        for n in (4, 6):
            for seed in (0, 1):
                cell = out / "runs" / arm / f"N{n}-s{seed}"
                assert (cell / "summary.json").is_file() and (cell / "metrics.json").is_file()
                configs[(arm, n, seed)] = yaml.safe_load((cell / "config.yaml").read_text())
    assert configs[("dgpg", 4, 0)]["episodes"] == 2 and configs[("mappo", 4, 0)]["episodes"] == 3
    for arm in ("mappo", "ippo"):
        a, b = dict(configs[("dgpg", 6, 1)]), dict(configs[(arm, 6, 1)])
        for key in ("algo", "learner", "episodes", "out"):
            a.pop(key), b.pop(key)
        assert a == b  # same networks, PPO settings, evaluation, domain, seed, threads
    assert all(c["eval"]["heuristics"] is False and c["threads"] == 1 for c in configs.values())
    assert configs[("ippo", 4, 0)]["domain_config"]["horizon"] == 6
    heur = json.loads((out / "heuristics" / "N4-s0" / "cell.json").read_text())["result"]  # seeded with seed 0
    assert {"random", "best_fit"} <= set(heur["rewards"]) and heur["horizon"] == 6
    assert result.floor == "random" and result.target == "best_fit"  # the domain's own floor and target

    # table: one row per (N, arm) in the Markdown and the CSV, heuristics per N
    md = (out / "scale.md").read_text()
    assert "| N | algorithm | episodes | converged | episodes to converge | best-checkpoint (validation) test reward" in md
    for n in (4, 6):
        for label in ("DG-PG", "MAPPO", "IPPO"):
            assert f"| {n} | {label} |" in md
    assert "| N | " in md.split("Heuristics")[1] and "best_fit" in md
    rows = list(csv.DictReader((out / "scale.csv").open()))
    learners = [(int(r["N"]), r["name"]) for r in rows if r["kind"] == "learner"]
    assert learners == [(n, a) for n in (4, 6) for a in ("dgpg", "mappo", "ippo")]
    assert {r["name"] for r in rows if r["kind"] == "heuristic"} >= {"random", "best_fit"}
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 12
    # convergence is evaluated exactly as documented, per run (defined at N = 6: Random < Best-Fit there)
    assert result.heuristics[6]["random"] < result.heuristics[6]["best_fit"]
    assert "| 6 | DG-PG | 2 | 0/2 |" in md  # 2 evaluations < the window of 3: cannot converge
    assert "fewer than 3 evaluations" in md
    crit = ConvergenceCriterion()
    for key, cell in _cells(out).items():
        floor, target = (result.heuristics[key[1]][h] for h in ("random", "best_fit"))
        if floor == target:
            assert cell["converged_at"] is None
            continue
        k = crit.episodes_to_converge(cell["curve"][1:], floor, target)
        assert cell["converged_at"] == (None if k is None else cell["curve_episodes"][k])
    info = (out / "command.txt").read_text()
    assert "cpu_count:" in info and "torch_threads:" in info and "cells run: 12" in info

    # marl-eval export: valid, common steps (DG-PG's 3 evaluations), step_count = episodes x horizon
    data = json.loads((out / "marl_eval.json").read_text())
    validate_marl_eval(data)
    run0 = data["cloud"]["N4"]["mappo"]["run_0"]
    assert list(run0) == ["step_0", "step_1", "step_2", "absolute_metrics"]
    assert [run0[f"step_{k}"]["step_count"] for k in range(3)] == [0, 6, 12]
    before = _cells(out)
    assert run0["absolute_metrics"]["return"] == [pytest.approx(before[("mappo", 4, 0)]["best"])]
    assert len(before[("mappo", 4, 0)]["curve"]) == 4  # the full budget stays in scale.json

    # resume: nothing runs again, same numbers
    calls.clear()
    again = run_scale_study(settings)
    assert calls == [] and again.cells_reused == 12 and again.cells_run == 0
    assert _cells(out) == {k: {**v, "reused": True} for k, v in before.items()}
    # an interrupted cell (no cell.json: it is written last) runs again, and only it; same seed, same numbers
    (out / "runs" / "ippo" / "N6-s1" / "cell.json").unlink()
    third = run_scale_study(settings)
    assert calls == [6] and third.cells_run == 1
    redone = _cells(out)[("ippo", 6, 1)]
    assert redone["curve"] == before[("ippo", 6, 1)]["curve"] and redone["best"] == before[("ippo", 6, 1)]["best"]


def test_resume_refuses_a_cell_run_with_other_settings(bins, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ScaleSettings(
        domain="bins", agents=[8], seeds=[0], algos=["dgpg"], episodes=1, run_config=BINS_SMALL, out=tmp_path
    )
    run_scale_study(settings)
    calls = _counting(monkeypatch)
    changed = copy.deepcopy(BINS_SMALL) | {"ppo": {"learning_rate": 1e-4}}
    with pytest.raises(StudyError, match=r"ppo\.learning_rate: 0\.002 -> 0\.0001"):
        run_scale_study(settings.model_copy(update={"run_config": changed}))
    assert calls == []  # refused before anything ran
    # torch threads do not change what a cell computes: the cell is reused
    again = run_scale_study(settings.model_copy(update={"threads": 2}))
    assert again.cells_reused == 1 and calls == []


def test_bins_study_without_heuristics_reports_no_convergence(bins, tmp_path: Path) -> None:
    out = tmp_path / "bins"
    settings = ScaleSettings(
        domain="bins", agents=[8, 12], seeds=[0], algos=["dgpg", "mappo"], episodes=2, baseline_budget=1.5,
        run_config=BINS_SMALL, out=out,
    )  # fmt: skip
    result = run_scale_study(settings)
    assert [(s.agents, s.arm, s.episodes) for s in result.summaries] == [
        (8, "dgpg", 2), (8, "mappo", 3), (12, "dgpg", 2), (12, "mappo", 3)
    ]  # fmt: skip
    assert all(s.converged is None for s in result.summaries) and result.floor is None
    md = (out / "scale.md").read_text()
    assert "| 8 | DG-PG | 2 | n/a | n/a |" in md and "has no heuristics" in md
    for name in (*FILES, "curves_N8.png", "curves_N12.png"):
        assert (out / name).is_file(), name
    validate_marl_eval(json.loads((out / "marl_eval.json").read_text()))


def test_alpha_study_arms_are_the_dgpg_trainer_with_alpha_replaced(bins, tmp_path: Path) -> None:
    out = tmp_path / "alpha"
    run_config = copy.deepcopy(BINS_SMALL) | {"guidance": {"alpha": {"kind": "linear", "start": 0.7, "end": 0.1}}}
    settings = AlphaSettings(
        domain="bins", agents=[8], seeds=[0], alphas=[0.0, 0.5], episodes=1, run_config=run_config, out=out
    )
    result = run_alpha_study(settings)
    assert [s.arm for s in result.summaries] == ["dgpg-decay", "dgpg-alpha0", "dgpg-alpha0.5"]
    arms = ("dgpg-decay", "dgpg-alpha0", "dgpg-alpha0.5")
    cfg = {a: yaml.safe_load((out / "runs" / a / "N8-s0" / "config.yaml").read_text()) for a in arms}
    assert all(c["algo"] == "dgpg" for c in cfg.values())
    assert cfg["dgpg-alpha0"]["learner"]["estimator"]["alpha"] == {"kind": "constant", "value": 0.0}
    assert cfg["dgpg-alpha0.5"]["learner"]["estimator"]["alpha"] == {"kind": "constant", "value": 0.5}
    assert cfg["dgpg-decay"]["learner"]["estimator"]["alpha"] == {"kind": "linear", "start": 0.7, "end": 0.1}
    md = (out / "alpha.md").read_text()
    assert "alpha decay 0.7 -> 0.1" in md and "alpha = 0 (descent term removed)" in md
    for name in ("alpha.md", "alpha.csv", "curves_N8.png", "episodes_to_converge.png", "marl_eval.json"):
        assert (out / name).is_file(), name
    assert set(json.loads((out / "marl_eval.json").read_text())["bins"]["N8"]) == {
        "dgpg-decay", "dgpg-alpha0", "dgpg-alpha0.5"
    }  # fmt: skip


def test_converged_at_maps_evaluations_to_training_episodes() -> None:
    crit = ConvergenceCriterion(window=1, tolerance=0.05, min_fraction=0.9)
    episodes, curve = [0, 2, 4, 6, 8], [-100.0, -50.0, -1.0, 0.0, 0.0]
    # the untrained evaluation (episode 0) is left out; the 3rd evaluation after training is episode 6
    assert converged_at(episodes, curve, -100.0, 0.0, crit) == 4  # -1 is within 5 % of the range of the final 0
    assert converged_at(episodes, curve, -100.0, 0.0, ConvergenceCriterion(window=1, tolerance=0.001)) == 6
    assert converged_at(episodes, curve, -100.0, -100.0, crit) is None  # floor == target: not defined
    assert converged_at(episodes, curve, None, 0.0, crit) is None
    assert converged_at(episodes, [-100.0, None, -1.0, None, 0.0], -100.0, 0.0, crit) == 4  # unevaluated: skipped
    # ends near the floor: the quality gate fails
    assert converged_at(episodes, [-100.0, -90.0, -95.0, -99.0, -98.0], -100.0, 0.0, crit) is None


def test_arms_are_learner_presets_with_the_guided_budget_for_guided_ones() -> None:
    settings = ScaleSettings(domain="cloud", algos=["dgpg", "mappo", "ippo", "mfac", "dgpg_exact"], episodes=4)
    arms = [(a.name, a.label, a.algo, a.episodes) for a in settings.arms()]
    assert arms == [("dgpg", "DG-PG", "dgpg", 4), ("mappo", "MAPPO", "mappo", 10), ("ippo", "IPPO", "ippo", 10),
                    ("mfac", "MF-AC", "mfac", 10), ("dgpg_exact", "DG-PG (exact)", "dgpg_exact", 4)]  # fmt: skip
    with pytest.raises(ValueError, match="unknown learner presets \\['sac'\\]"):
        ScaleSettings(domain="cloud", algos=["dgpg", "sac"])


def test_domain_is_required_and_floor_target_come_from_the_domain(bins) -> None:
    with pytest.raises(ConfigError, match="no domain given"):
        run_scale_study(ScaleSettings(agents=[4]))
    cloud = get_domain("cloud").from_config(4, {})
    assert floor_target(ScaleSettings(domain="cloud"), cloud).floor == "random"  # CloudDomain.floor_heuristic
    own = floor_target(ScaleSettings(domain="cloud", floor="round_robin", target="least_loaded"), cloud)
    assert (own.floor, own.target, own.defined) == ("round_robin", "least_loaded", True)
    with pytest.raises(ConfigError, match="convergence needs the heuristics \\['nope'\\]"):
        floor_target(ScaleSettings(domain="cloud", floor="nope"), cloud)
    none = floor_target(ScaleSettings(domain="bins"), get_domain("bins").from_config(8, {}))
    assert not none.defined and "has no heuristics" in none.note
    with pytest.raises(ConfigError, match="does not have"):  # named, but the domain has no heuristics at all
        floor_target(ScaleSettings(domain="bins", floor="random", target="best_fit"), get_domain("bins").from_config(8, {}))
    with pytest.raises(ValueError, match="different heuristics"):
        ScaleSettings(domain="cloud", floor="random", target="random")


def test_cli_scale_and_alpha_through_register(bins, tmp_path: Path) -> None:
    app = _app()
    out = tmp_path / "cli"
    args = ["study", "scale", "--domain", "bins", "--agents", "8", "--algos", "dgpg", "mappo", "--seeds", "0", "1"]
    args += ["--episodes", "1", "--baseline-budget", "2", "--set", "eval.test_scenarios=2", "--threads", "1"]
    args += ["--set", "domain_config.horizon=3", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "scale.md").is_file() and (out / "curves_N8.png").is_file()
    doc = json.loads((out / "scale.json").read_text())
    assert sorted({(c["arm"], c["seed"], c["episodes"]) for c in doc["cells"]}) == [
        ("dgpg", 0, 1), ("dgpg", 1, 1), ("mappo", 0, 2), ("mappo", 1, 2)
    ]  # fmt: skip
    command = (out / "command.txt").read_text()
    assert "--agents 8 --seeds 0,1" in command and "--algos dgpg,mappo" in command and "--floor" not in command

    alpha_out = tmp_path / "alpha"
    args = ["study", "alpha", "--domain", "bins", "--agents", "8", "--alphas", "0", "--no-decay", "--seeds", "0"]
    args += ["--episodes", "1", "--set", "eval.test_scenarios=2", "--out", str(alpha_out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (alpha_out / "runs" / "dgpg-alpha0" / "N8-s0" / "summary.json").is_file()
    assert not (alpha_out / "runs" / "dgpg-decay").exists()

    bad = runner.invoke(app, ["study", "scale", "--algos", "sac", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "algos" in bad.output
    bad = runner.invoke(app, ["study", "scale", "--agents", "5,x", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--agents expects integers" in bad.output
    bad = runner.invoke(app, ["study", "alpha", "--alphas", "1.5", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "[0, 1]" in bad.output
    bad = runner.invoke(app, ["study", "scale", "--tolerance", "0", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "tolerance" in bad.output and "(0, 1]" in bad.output
    bad = runner.invoke(app, ["study", "scale", "--domain", "cloud", "--agents", "4", "--floor", "nope",
                              "--out", str(tmp_path / "x")])  # fmt: skip
    assert bad.exit_code == 2 and "convergence needs the heuristics ['nope']" in bad.output
    bad = runner.invoke(app, ["study", "scale", "--agents", "4", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "no domain given" in bad.output and "cloud" in bad.output
    assert "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 1  # one line
    assert not (tmp_path / "x").exists()  # nothing written before the settings are checked


# ------------------------------------------------------------------ marl-eval layout
def _valid() -> dict:
    def run(values: list[float]) -> dict:
        steps = {f"step_{k}": {"step_count": 100 * k, "return": [v, v + 1.0]} for k, v in enumerate(values)}
        return {**steps, "absolute_metrics": {"return": [max(values)] * 2}}

    return {
        "cloud": {
            task: {algo: {f"run_{s}": run([-10.0 + s, -5.0, -2.0]) for s in range(2)} for algo in ("dgpg", "mappo")}
            for task in ("N5", "N10")
        }
    }


def test_valid_marl_eval_data_passes() -> None:
    validate_marl_eval(_valid())
    validate_marl_eval(_valid(), strict=False)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: d.clear(), "no environments"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"].pop("absolute_metrics"), "missing 'absolute_metrics'"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"]["step_1"].update(step_count="100"), "step_count: must be an int"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"]["step_1"].pop("step_count"), "step_1: missing 'step_count'"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"]["step_1"].update(step_count=1000), "is smaller than 1000"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"]["step_2"].update(win=[1.0]), "metric lists differ in length"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"]["step_2"].update({"return": -2.0}), "must be a list"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"]["step_2"].update({"return": []}), "metric list is empty"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"]["step_2"].update({"return": [float("nan")]}), "finite numbers"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"]["step_2"].update({"return": [True]}), "finite numbers"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"]["absolute_metrics"].update(win=[1.0, 1.0]), "not logged in"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"].update(epoch_3={}), "step keys must look like 'step_<k>'"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"].update(absolute_2={}), "exactly one key 'absolute_metrics'"),
        (lambda d: d["cloud"]["N5"].update(DGPG=d["cloud"]["N5"]["dgpg"]), "collide (marl-eval lower-cases keys)"),
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"]["step_2"].update(mean_return=[1.0, 1.0]), "reserved"),
        (lambda d: d["cloud"].update(N20=[]), "N20: expected a dict of algorithms, got list"),
    ],
)
def test_broken_marl_eval_data_fails_with_a_clear_message(breakage, message: str) -> None:
    data = _valid()
    breakage(data)
    with pytest.raises(MarlEvalFormatError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate_marl_eval(data, strict=False)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: d["cloud"]["N5"]["dgpg"]["run_0"].pop("step_2"), "same logging steps"),
        (lambda d: d["cloud"]["N5"]["dgpg"].pop("run_1"), "same number of runs"),
        (lambda d: d["cloud"]["N10"].pop("mappo"), "same algorithms"),
        (lambda d: d["cloud"]["N5"].update({"dgpg,v2": d["cloud"]["N5"].pop("dgpg")}), "must not contain commas"),
    ],
)
def test_marl_eval_uniformity_rules_only_in_strict_mode(breakage, message: str) -> None:
    data = _valid()
    breakage(data)
    if "commas" not in message:
        validate_marl_eval(data, strict=False)
    with pytest.raises(MarlEvalFormatError, match=message):
        validate_marl_eval(data)


def test_build_marl_eval_keeps_common_steps_by_default() -> None:
    runs = [
        RunCurve("N5", "dgpg", "run_0", [0, 10, 20], [-9.0, -3.0, -2.0], -2.0),
        RunCurve("N5", "mappo", "run_0", [0, 10, 20, 30, 40], [-9.0, -8.0, -8.0, -7.0, -1.0], -1.0),
    ]
    data = build_marl_eval("cloud", runs)
    assert list(data["cloud"]["N5"]["mappo"]["run_0"]) == ["step_0", "step_1", "step_2", "absolute_metrics"]
    assert data["cloud"]["N5"]["mappo"]["run_0"]["absolute_metrics"] == {"return": [-1.0]}  # whole budget
    full = build_marl_eval("cloud", runs, steps="all")
    assert full["cloud"]["N5"]["mappo"]["run_0"]["step_4"] == {"step_count": 40, "return": [-1.0]}
    with pytest.raises(MarlEvalFormatError, match="same logging steps"):
        validate_marl_eval(full)
    with pytest.raises(ValueError, match="3 step counts for 2 values"):
        build_marl_eval("cloud", [RunCurve("N5", "dgpg", "run_0", [0, 1, 2], [1.0, 2.0], 2.0)])
