"""The documentation site builds with ``mkdocs build --strict`` and its generated pages are current."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from guidedmarl import reference_docs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("page", ["settings.md", "cli.md"])
def test_generated_reference_pages_match_the_code(page: str) -> None:
    text = {"settings.md": reference_docs.settings_page, "cli.md": reference_docs.cli_page}[page]()
    committed = (ROOT / "docs" / "reference" / page).read_text()
    assert committed == text, f"docs/reference/{page} is stale: run `python -m guidedmarl.reference_docs docs/reference`"


def test_settings_reference_names_every_run_setting_and_domain() -> None:
    text = reference_docs.settings_page()
    for needle in ("`ppo.learning_rate`", "`device`", "`eval.validation_scenarios`", "`domain_config.horizon`"):
        assert needle in text
    for domain in reference_docs.SHIPPED_DOMAINS:
        assert f"## Domain `{domain}`" in text


def test_site_builds_strict_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "system_state" in api and "reference_state" in api  # the API pages come from the docstrings
    for page in ("concepts", "writing-a-domain", "writing-an-estimator", "results", "reference/settings"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page
