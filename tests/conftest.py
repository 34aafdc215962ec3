"""Shared fixtures: the example `bins` domain (loaded from examples/) and small configs."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# On CI (CI=true), property tests draw the same examples on every run, so that a red build
# can be reproduced; locally they explore new examples each time.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]

# Runs made by tests (and their subprocesses) do not read or write the user's heuristics cache;
# tests/test_heuristic_cache.py turns it on in a temporary folder.
os.environ["GUIDEDMARL_CACHE_DIR"] = "off"


def load_example(name: str):
    """Import ``examples/<name>.py`` as a module (examples are not a package)."""
    mod_name = f"guidedmarl_example_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bins():
    """The example domain module (registers the domain `bins` on import)."""
    return load_example("custom_domain")


@pytest.fixture(scope="session")
def example():
    """``example("name")`` imports ``examples/name.py``."""
    return load_example
