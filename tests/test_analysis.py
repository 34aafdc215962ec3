"""`guidedmarl evaluate`, `compare` and `plot` on real run folders; `load_run` and `evaluate` from Python."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guidedmarl.cli import app
from guidedmarl.domain import FRESH_SEED_BASE, TEST_SEED_BASE, VALIDATION_SEED_BASE
from guidedmarl.runs import evaluate, load_run

runner = CliRunner()
SMALL = ["--agents", "6", "--episodes", "3", "--threads", "1", "--quiet", "--set", "domain_config.horizon=6",
         "--set", "domain_config.warmup=2", "--set", "eval.test_scenarios=3", "--set", "eval.validation_scenarios=2"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three seeds of two learners on cloud."""
    root = tmp_path_factory.mktemp("runs")
    out = []
    for algo in ("dgpg", "mappo"):
        for seed in range(3):
            folder = root / f"{algo}-s{seed}"
            result = runner.invoke(app, ["run", "--domain", "cloud", "--algo", algo, "--seed", str(seed),
                                         "--out", str(folder), *SMALL])  # fmt: skip
            assert result.exit_code == 0, result.output
            out.append(folder)
    return out


def test_evaluate_best_on_the_test_set_reproduces_the_run(runs: list[Path]) -> None:
    """Scoring best.pt on the run's own test scenarios gives exactly the best_test_reward the run reported."""
    run = runs[0]
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    doc = json.loads((run / "eval-best-test3.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert doc["policy"]["mean"] == summary["best_test_reward"]
    assert doc["checkpoint_episode"] == summary["best_episode"]
    assert {k: v["mean"] for k, v in doc["heuristics"].items()} == summary["baselines"]
    final = evaluate(run, "final", heuristics=False)
    assert final["policy"]["mean"] == summary["final_test_reward"]


def test_evaluate_on_fresh_scenarios(runs: list[Path]) -> None:
    run = runs[1]
    result = runner.invoke(app, ["evaluate", str(run), "--checkpoint", "final", "--scenarios", "5", "--seed", "7",
                                 "--no-heuristics"])  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads((run / "eval-final-fresh5-s7.json").read_text())
    seeds = doc["scenarios"]["seeds"]
    assert len(set(seeds)) == 5 and all(s >= FRESH_SEED_BASE for s in seeds)  # never train, validation or test
    assert FRESH_SEED_BASE > VALIDATION_SEED_BASE + 10_000 > TEST_SEED_BASE
    assert len(doc["policy"]["returns"]) == 5 and doc["heuristics"] == {}
    other = evaluate(load_run(run), run / "final.pt", scenarios=5, seed=8, heuristics=False, out=run / "x.json")
    assert other["scenarios"]["seeds"] != seeds and (run / "x.json").is_file()
    again = evaluate(run, "final", scenarios=5, seed=7, heuristics=False, out=run / "y.json")
    assert again["policy"] == doc["policy"]  # the same seed scores the same scenarios


def test_evaluate_errors(runs: list[Path], tmp_path: Path) -> None:
    bad = runner.invoke(app, ["evaluate", str(runs[0]), "--scenarios", "50"])
    assert bad.exit_code == 2 and "pass --seed S" in bad.output
    missing = runner.invoke(app, ["evaluate", str(runs[0]), "--checkpoint", str(tmp_path / "no.pt")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    corrupt = runner.invoke(app, ["evaluate", str(runs[0]), "--checkpoint", str(junk)])
    assert corrupt.exit_code == 1 and "cannot be read" in corrupt.output
    nofolder = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert nofolder.exit_code == 2 and "not a run folder" in nofolder.output


def test_compare_prints_each_run_and_groups(runs: list[Path]) -> None:
    result = runner.invoke(app, ["compare", *map(str, runs)], terminal_width=160)
    assert result.exit_code == 0, result.output
    for run in runs:
        assert run.name in result.output
    grouped = runner.invoke(app, ["compare", *map(str, runs), "--group-by", "algo"], terminal_width=160)
    assert grouped.exit_code == 0, grouped.output
    lines = [line for line in grouped.output.splitlines() if re.match(r"^│ (dgpg|mappo) ", line)]
    assert len(lines) == 2 and all("0,1,2" in line and "finished" in line for line in lines)
    bad = runner.invoke(app, ["compare", *map(str, runs), "--group-by", "nope"])
    assert bad.exit_code == 2 and "group_by: 'nope' is not a setting" in bad.output


def test_plot_overlays_seeds_of_two_learners(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "fig" / "cmp.png"
    result = runner.invoke(app, ["plot", *map(str, runs), "--group-by", "algo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    svg = out.with_suffix(".svg").read_text()
    assert "dgpg (3 runs)" in svg and "mappo (3 runs)" in svg and "best checkpoint" in svg
    assert "best_fit (heuristic)" in svg  # heuristic lines: every run shares domain, N and settings
    steps = runner.invoke(app, ["plot", *map(str, runs[:2]), "--x", "global_step", "--out", str(tmp_path / "s.png")])
    assert steps.exit_code == 0 and "environment steps" in (tmp_path / "s.svg").read_text()
