"""Domain registry: Python registration, third-party entry points, clear errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from guidedmarl import ConfigError, Domain, available_domains, get_domain, register_domain


def _install_fake_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, target: str, body: str) -> None:
    """Create an installed distribution with a ``guidedmarl.domains`` entry point on sys.path."""
    pkg = tmp_path / f"{name}_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(body))
    dist = tmp_path / f"{name}_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[guidedmarl.domains]\n{name} = {name}_pkg:{target}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


PLUGIN = """
from guidedmarl import Domain

class ThirdPartyDomain(Domain):
    name = "thirdparty"
    description = "a domain from another package"

    def make_env(self, num_envs):
        raise NotImplementedError("not needed by the registry test")

    def make_model(self):
        raise NotImplementedError("not needed by the registry test")
"""


def test_external_package_extends_registry_through_entry_point(tmp_path, monkeypatch) -> None:
    _install_fake_plugin(tmp_path, monkeypatch, "thirdparty", "ThirdPartyDomain", PLUGIN)
    assert "thirdparty" in available_domains()
    cls = get_domain("thirdparty")
    assert issubclass(cls, Domain) and cls.__module__ == "thirdparty_pkg"
    assert available_domains()["thirdparty"] == "a domain from another package"
    sys.modules.pop("thirdparty_pkg", None)


def test_broken_plugin_is_reported_with_its_name(tmp_path, monkeypatch) -> None:
    _install_fake_plugin(tmp_path, monkeypatch, "brokenplug", "Missing", "x = 1\n")
    with pytest.raises(ConfigError, match="domain 'brokenplug' .* failed to load"):
        get_domain("brokenplug")
    assert available_domains()["brokenplug"].startswith("(broken")


def test_cloud_is_installed_through_its_entry_point() -> None:
    assert "cloud" in available_domains()
    assert get_domain("cloud").name == "cloud"


def test_unknown_domain_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="unknown domain 'nope'; available domains: .*cloud"):
        get_domain("nope")


def test_register_domain_in_python_and_errors() -> None:
    class Local(Domain):
        name = "local_test_domain"

        def make_env(self, num_envs):  # pragma: no cover - not used
            raise NotImplementedError

        def make_model(self):  # pragma: no cover - not used
            raise NotImplementedError

    assert register_domain(Local) is Local
    assert get_domain("local_test_domain") is Local
    with pytest.raises(TypeError, match="subclass of guidedmarl.Domain"):
        register_domain(object)  # type: ignore[arg-type]

    class Other(Local):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_domain(Other, "local_test_domain")


def test_domain_settings_are_validated_with_field_names(bins) -> None:
    with pytest.raises(ConfigError, match="agents_per_bin: Input should be greater than or equal to 1"):
        get_domain("bins").from_config(10, {"agents_per_bin": 0})
    with pytest.raises(ConfigError, match="typo_field: unknown setting 'typo_field'; valid here: "):
        get_domain("bins").from_config(10, {"typo_field": 3})


def test_training_seeds_never_reach_the_test_seeds(bins) -> None:
    domain = get_domain("bins").from_config(4, {})
    test = set(domain.test_seeds(40))
    # the run seed that made the last training seeds spill into the test range before the fix
    assert not test & set(domain.train_seeds(0, 2, 1601070485))
    for seed in (0, 1, 2**31 - 1):
        for episode in (0, 7, 10**6):
            assert not test & set(domain.train_seeds(episode, 64, seed))


def test_agents_default_to_the_domain_and_are_recorded(tmp_path) -> None:
    """RunConfig.agents None means the domain's default N; the run records the resolved N."""
    import json

    import yaml

    from guidedmarl import RunConfig
    from guidedmarl.domain import get_domain
    from guidedmarl.experiment import run_experiment as run

    cloud = get_domain("cloud")
    assert RunConfig(domain="cloud").agents is None
    assert cloud.from_config(None, {}).num_agents == cloud.default_agents == 50
    assert cloud.from_config(7, {}).num_agents == 7
    out = tmp_path / "run"
    cfg = RunConfig(domain="power", episodes=1, threads=1, out=out, eval={"test_scenarios": 2, "heuristics": False})
    run(cfg)
    assert json.loads((out / "summary.json").read_text())["agents"] == 6  # case30's generators
    assert yaml.safe_load((out / "config.yaml").read_text())["agents"] == 6


def test_a_run_without_algo_trains_its_domains_default_preset(bins) -> None:
    """RunConfig.algo not given: the domain's ``default_algo`` (cloud and traffic dgpg_exact), else
    dgpg; a given algo always wins; a domain of its own may name any registered preset."""
    from guidedmarl import RunConfig

    assert RunConfig(domain="cloud").algo == "dgpg_exact"
    assert RunConfig.model_validate({"domain": "cloud"}).learner.estimator.weight == "exact_difference"
    assert RunConfig(domain="traffic").algo == "dgpg_exact"
    assert RunConfig(domain="power").algo == "dgpg"
    assert RunConfig(domain="bins").algo == Domain.default_algo == "dgpg"  # a domain that names none
    assert RunConfig(domain="cloud", algo="dgpg").learner.estimator.weight == "first_order"
    assert RunConfig.model_validate({"domain": "cloud", "algo": None}).algo == "dgpg_exact"
    assert RunConfig(domain="no_such_domain").algo == "dgpg"  # the unknown domain is reported when it is built

    class PrefersMappo(Domain):
        name = "prefers_mappo_test_domain"
        default_algo = "mappo"

        def make_env(self, num_envs):  # pragma: no cover - not used
            raise NotImplementedError

        def make_model(self):  # pragma: no cover - not used
            raise NotImplementedError

    register_domain(PrefersMappo)
    cfg = RunConfig(domain="prefers_mappo_test_domain")
    assert cfg.algo == "mappo" and cfg.learner.estimator.kind == "shared_return"
