"""The example scripts run as documented (with small sizes)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_custom_domain_example_trains_both_learners(example, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    module = example("custom_domain")
    monkeypatch.setattr(sys, "argv", ["custom_domain.py", "--agents", "8", "--episodes", "2", "--out", str(tmp_path)])
    module.main()
    out = capsys.readouterr().out
    assert "dgpg: best test reward" in out and "mappo: best test reward" in out
    assert (tmp_path / "dgpg" / "learning_curve.png").is_file()


def test_quickstart_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "examples" / "quickstart.py").read_text()
    small = text.replace("agents=20", "agents=6").replace("episodes=5", "episodes=1").replace('"horizon": 100', '"horizon": 6')
    script = tmp_path / "quickstart_small.py"
    script.write_text(small)
    runpy.run_path(str(script), run_name="__main__")
    assert "best test reward" in capsys.readouterr().out
    assert (tmp_path / "runs" / "quickstart" / "summary.json").is_file()


def test_compare_learners_writes_table(example, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = example("compare_learners")
    argv = ["compare_learners.py", "--domain", "bins", "--agents", "6", "--episodes", "2", "--seeds", "0", "1",
            "--out", str(tmp_path)]
    example("custom_domain")  # registers `bins`
    monkeypatch.setattr(sys, "argv", argv)
    module.main()
    table = (tmp_path / "table.md").read_text()
    assert table.count("\n") == 5 and "DGPG" in table and "IPPO" in table  # header, rule, three learners
    assert (tmp_path / "curves.png").is_file() and (tmp_path / "results.json").is_file()
