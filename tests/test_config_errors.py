"""Bad settings are refused by the config with a message that names the setting and says what is wrong."""

from __future__ import annotations

import pytest
import torch

from guidedmarl import get_domain
from guidedmarl.config import build_config, deep_merge, parse_overrides
from guidedmarl.errors import ConfigError, GuidedMarlError


def _build(*overrides: str):
    return build_config(deep_merge({"domain": "cloud"}, parse_overrides(list(overrides))), "options")


@pytest.mark.parametrize("hidden", ["[-3]", "[0]", "[64, 0]"])
def test_hidden_widths_below_one_are_refused(hidden: str) -> None:
    with pytest.raises(ConfigError, match=r"ppo\.hidden\.\d: Input should be greater than or equal to 1"):
        _build(f"ppo.hidden={hidden}")


@pytest.mark.parametrize(("raw", "said"), [("nan", "is not a number"), (".nan", "is not a number"),
                                           (".inf", "is infinite"), ("-.inf", "is infinite")])  # fmt: skip
def test_nan_and_infinity_are_said_as_such(raw: str, said: str) -> None:
    with pytest.raises(ConfigError, match=f"ppo.learning_rate: {said}"):
        _build(f"ppo.learning_rate={raw}")


def test_a_non_finite_domain_setting_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"workload\.burst_factor: is infinite"):
        get_domain("cloud").from_config(6, {"workload": {"burst_factor": float("inf")}})


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("learner.estimator.alpha.end=0.9", ("linear", 0.9, 0.9)),
        ("learner.estimator.alpha.start=0.5", ("linear", 0.5, 0.2)),
        ("guidance.alpha.start=0.5", ("linear", 0.5, 0.2)),  # the settings name of older configs
        ("learner.estimator.alpha.value=0.3", ("constant", 0.3, 0.3)),
    ],
)
def test_a_partial_alpha_override_keeps_the_other_defaults(override: str, expected: tuple[str, float, float]) -> None:
    alpha = _build(override).learner.estimator.alpha
    assert (alpha.kind, alpha(0.0), alpha(1.0)) == pytest.approx(expected)


def test_an_unknown_alpha_kind_says_which_exist() -> None:
    with pytest.raises(ConfigError, match="alpha.kind must be 'constant' .* or 'linear'"):
        _build("learner.estimator.alpha.kind=cubic")


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [("ppo.learning_rat=0.1", "learning_rate"), ("eval.evry=2", "every"), ("episods=3", "episodes")],
)
def test_unknown_keys_get_a_did_you_mean(override: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        _build(override)


def test_unknown_domain_keys_get_a_did_you_mean_and_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="did you mean 'burst_factor'.*valid here: mean_load"):
        get_domain("cloud").from_config(6, {"workload": {"burst_factr": 3}})


@pytest.mark.parametrize(
    ("domain", "agents", "config"),
    [("cloud", 4, {"horizon": 3, "warmup": 1}), ("traffic", 4, {"network": "braess", "horizon": 3, "train_scenarios": 2})],
)
def test_discrete_env_step_accepts_numpy_arrays_and_lists(domain: str, agents: int, config: dict) -> None:
    import numpy as np

    env = get_domain(domain).from_config(agents, config).make_env(1)
    steps = []
    for actions in (np.zeros((1, agents), dtype=np.int32), [[0] * agents]):
        env.reset([0])
        steps.append(env.step(actions))
    env.reset([0])
    steps.append(env.step(torch.zeros(1, agents, dtype=torch.long)))
    assert steps[0].reward.tolist() == steps[1].reward.tolist() == steps[2].reward.tolist()


def test_continuous_env_step_accepts_numpy_arrays_and_lists() -> None:
    import numpy as np

    env = get_domain("power").from_config(None, {"case": "case30", "horizon": 3}).make_env(1)
    n = env.spec.num_agents
    env.reset([0])
    from_numpy = env.step(np.zeros((1, n, 1), dtype=np.float64))
    env.reset([0])
    from_list = env.step([[[0.0]] * n])
    assert from_numpy.reward.tolist() == from_list.reward.tolist()


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ("0101", "must be a torch tensor, a NumPy array or a nested list, got str"),
        ([[0.5, 1.0, 0.0, 1.0]], "discrete actions must be integers, got a list of float64"),
        ([[0, 1], [0]], "could not be read as one array"),
        ([[0, 1, 0]], r"actions must have shape \(1, 4\), got \(1, 3\)"),
    ],
)
def test_bad_python_actions_get_a_clear_message(actions: object, message: str) -> None:
    env = get_domain("cloud").from_config(4, {"horizon": 3, "warmup": 1}).make_env(1)
    env.reset([0])
    with pytest.raises(ValueError, match=message):
        env.step(actions)  # type: ignore[arg-type]


def test_misspelt_choices_and_cases_get_a_did_you_mean() -> None:
    with pytest.raises(ConfigError, match="did you mean 'option_scorer'"):
        _build("ppo.actor=optionscorer")
    with pytest.raises(ConfigError, match="network: .*did you mean 'siouxfalls'"):
        get_domain("traffic").from_config(6, {"network": "siouxfals"})
    with pytest.raises(GuidedMarlError, match="unknown power case 'cse118' \\(did you mean 'case118'"):
        get_domain("power").from_config(None, {"case": "cse118"})


def test_errors_from_a_config_file_name_the_file(tmp_path) -> None:
    from typer.testing import CliRunner

    from guidedmarl.cli import app

    bad = tmp_path / "mine.yaml"
    bad.write_text("domain: cloud\nppo:\n  learning_rate: 5\n  hidden: [0]\n")
    result = CliRunner().invoke(app, ["run", "--config", str(bad), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"invalid settings from {bad}" in text and "ppo.learning_rate" in text and "ppo.hidden.0" in text
