"""The README's two commands stay true: CI runs the test command, the main command exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    first_two = [next(line for line in b.splitlines() if line and not line.startswith("#")) for b in blocks[:2]]
    return first_two


def test_ci_runs_the_readme_test_command() -> None:
    _, test_cmd = _readme_commands()
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()


def test_main_command_installs_with_constraints_and_runs_cloud() -> None:
    main_cmd, _ = _readme_commands()
    assert "pip install -c constraints.txt" in main_cmd and main_cmd.endswith("guidedmarl run --domain cloud")
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in pins
