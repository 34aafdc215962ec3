"""`guidedmarl study variance`: files, CLI, slope fit, and a statistical sanity check."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from typer.testing import CliRunner

from guidedmarl import RunConfig
from guidedmarl.cli import app
from guidedmarl.config import ConfigError
from guidedmarl.experiment import build
from guidedmarl.studies.options import validate_settings
from guidedmarl.studies.stats import fit_power_law
from guidedmarl.studies.variance import ESTIMATORS, VarianceSettings, run_variance_study
from guidedmarl.studies.variance import measure
from guidedmarl.studies.variance.measure import score

runner = CliRunner()
FILES = ("variance.csv", "variance.md", "variance.json", "variance.png", "command.txt")
CLOUD_SMALL = {"domain_config": {"horizon": 5, "warmup": 2}}


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "variance.csv").open()))


def _check_outputs(out: Path, agents: list[int]) -> dict:
    for name in FILES:
        assert (out / name).is_file(), name
    assert (out / "variance.png").read_bytes()[:4] == b"\x89PNG"
    rows = _rows(out)
    assert [(int(r["N"]), r["estimator"]) for r in rows] == [(n, e) for n in agents for e in ESTIMATORS]
    doc = json.loads((out / "variance.json").read_text())
    for quantity in ("variance", "relative_variance"):
        assert set(doc["fits"][quantity]) == set(ESTIMATORS)
    md = (out / "variance.md").read_text()
    assert "| N | estimator | variance | std error | relative variance |" in md
    assert "| N | weight of (b) | bias / gradient | bootstrap 95 % | cosine |" in md
    assert [b["N"] for b in doc["first_order_bias"]] == agents
    assert all(math.isfinite(b["first_order_bias_relative"]) for b in doc["first_order_bias"])
    info = (out / "command.txt").read_text()
    assert "cpu_count:" in info and "torch:" in info and "torch_threads:" in info
    return doc


def test_bins_study_writes_every_file_with_finite_slopes(bins, tmp_path: Path) -> None:
    out = tmp_path / "bins"
    settings = VarianceSettings(
        domain="bins", agents=[8, 16, 32], rollouts=8, scenarios=2, horizon=3, bootstrap=30, out=out, threads=1
    )
    result = run_variance_study(settings)
    doc = _check_outputs(out, [8, 16, 32])
    for est in ESTIMATORS:
        assert math.isfinite(result.fits["variance"][est].slope), est
        assert math.isfinite(doc["fits"]["variance"][est]["slope"])
        assert math.isfinite(result.fits["variance"][est].boot_low)
    assert all(float(r["variance"]) > 0 and float(r["std_error"]) >= 0 for r in _rows(out))
    assert doc["resolved"]["steps"] == 3 and doc["resolved"]["domain_config"]["horizon"] == 3
    assert doc["resolved"]["alpha"] == pytest.approx(0.9)  # start of the default schedule


def test_cloud_study_runs_on_small_settings(tmp_path: Path) -> None:
    out = tmp_path / "cloud"
    settings = VarianceSettings(
        domain="cloud", agents=[4, 8], rollouts=8, scenarios=2, bootstrap=20, out=out, threads=1, run_config=CLOUD_SMALL
    )
    result = run_variance_study(settings)
    doc = _check_outputs(out, [4, 8])
    # horizon: an explicit domain_config.horizon is used when --horizon is not given
    assert doc["resolved"]["steps"] == 5 and doc["resolved"]["domain_config"]["warmup"] == 2
    for est in ("guidance", "dgpg"):
        assert math.isfinite(result.fits["variance"][est].slope), est
    assert all(math.isfinite(float(r["variance"])) for r in _rows(out))


def test_cli_study_variance(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["study", "variance", "--domain", "cloud", "--agents", "4,8", "--rollouts", "8", "--scenarios", "2"]
    args += ["--set", "domain_config.warmup=2", "--horizon", "4", "--bootstrap", "10", "--threads", "1"]
    args += ["--alpha", "0.5", "--reward-units", "mean", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = _check_outputs(out, [4, 8])
    assert doc["resolved"]["alpha"] == 0.5 and doc["resolved"]["steps"] == 4
    assert doc["settings"]["reward_units"] == "mean"
    assert "--agents 4,8" in (out / "command.txt").read_text()
    without = tmp_path / "without-bias"
    result = runner.invoke(app, [*args[:-1], str(without), "--no-first-order-bias"])
    assert result.exit_code == 0, result.output
    assert json.loads((without / "variance.json").read_text())["first_order_bias"] == []
    assert "First-order bias" not in (without / "variance.md").read_text()
    assert _rows(without) == _rows(out)  # the variance rows do not depend on the extra weight

    bad = runner.invoke(app, ["study", "variance", "--rollouts", "7", "--scenarios", "2", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "multiple of scenarios" in bad.output
    bad = runner.invoke(app, ["study", "variance", "--reward-units", "total", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "sum" in bad.output
    bad = runner.invoke(app, ["study", "variance", "--domain", "nope", "--agents", "4", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown domain 'nope'" in bad.output


def test_checkpoint_policy_is_loaded_only_where_it_fits(bins, tmp_path: Path) -> None:
    from guidedmarl.experiment import run_experiment as run

    # a real run's checkpoint; its config.yaml (same folder) supplies the network settings
    cfg = RunConfig(domain="bins", agents=8, episodes=2, seed=3, out=tmp_path / "run", eval={"test_scenarios": 2})
    trained = run(cfg)
    ckpt = trained.out / "final.pt"
    # shared parameters: any N with the same observation size (bins: N = 8 and N = 9 both have M = 2)
    out = tmp_path / "from_ckpt"
    settings = VarianceSettings(
        domain="bins", agents=[8, 9], rollouts=4, scenarios=1, horizon=2, bootstrap=0, out=out, checkpoint=ckpt
    )
    run_variance_study(settings)
    assert len(_rows(out)) == 6
    doc = json.loads((out / "variance.json").read_text())
    assert doc["resolved"]["progress"] == 1.0 and doc["resolved"]["alpha"] == pytest.approx(0.2)  # end of the schedule
    # the policy really is the checkpoint's: a different policy gives different gradients
    fresh = run_variance_study(settings.model_copy(update={"checkpoint": None, "out": tmp_path / "fresh"}))
    assert [r["variance"] for r in fresh.rows] != [float(r["variance"]) for r in _rows(out)]

    # per-agent weights: only at their own N
    per_agent = RunConfig(domain="bins", agents=8, seed=3, ppo={"shared_parameters": False})
    _, trainer = build(per_agent)
    torch.save(trainer.state_dict(), tmp_path / "own.pt")
    bad = settings.model_copy(
        update={"checkpoint": tmp_path / "own.pt", "out": tmp_path / "bad", "run_config": {"ppo": {"shared_parameters": False}}}
    )
    with pytest.raises(ConfigError, match="does not fit the policy at N = 9"):
        run_variance_study(bad)
    run_variance_study(bad.model_copy(update={"agents": [8]}))  # its own N is fine


def test_power_law_fit_recovers_known_slopes() -> None:
    ns = np.array([10, 30, 100, 300, 1000, 1500])
    for slope in (0.0, 1.0, -0.5, 2.0):
        fit = fit_power_law(ns, 3.7 * ns**slope)
        assert fit.slope == pytest.approx(slope, abs=1e-10)
        assert fit.intercept == pytest.approx(math.log(3.7), abs=1e-10)
        assert fit.se == pytest.approx(0.0, abs=1e-10) and fit.points == 6
    # noisy power law: the 95 % regression interval covers the true slope in ~95 % of cases
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        fit = fit_power_law(ns, 2.0 * ns**1.0 * np.exp(rng.normal(0.0, 0.2, ns.size)))
        covered += fit.ci_low <= 1.0 <= fit.ci_high
    assert 0.90 <= covered / 400 <= 0.99
    assert math.isnan(fit_power_law([5], [1.0]).slope)


def test_logit_score_is_the_gradient_of_log_pi(bins) -> None:
    _, trainer = build(RunConfig(domain="bins", agents=8, envs=3))
    obs = torch.randn(3, 8, trainer.env.spec.obs_dim)
    logits = trainer.actor.net(obs).detach().requires_grad_(True)
    dist = torch.distributions.Categorical(logits=logits)
    actions = dist.sample()
    (grad,) = torch.autograd.grad(dist.log_prob(actions).sum(), logits)
    torch.testing.assert_close(score(trainer.actor, dist, actions), grad)


def test_bins_guidance_variance_flat_while_shared_return_variance_grows(bins, tmp_path: Path) -> None:
    """The claim on a case with a known answer.

    In the bins toy the team reward is a sum over M ~ N/4 bins of squared deviations, so its
    variance grows like N already in the environment's units ("mean"), while g_i only
    involves agent i's bin: its variance does not grow with N.
    """
    settings = VarianceSettings(
        domain="bins", agents=[8, 32, 128], rollouts=32, scenarios=4, horizon=3, bootstrap=0,
        reward_units="mean", seed=1, out=tmp_path / "claim", threads=1,
    )  # fmt: skip
    result = run_variance_study(settings)
    shared = result.fits["variance"]["shared"].slope
    guidance = result.fits["variance"]["guidance"].slope
    assert 0.6 < shared < 1.6, shared
    assert abs(guidance) < 0.5, guidance
    assert shared - guidance > 0.6
    # the same data in sum units: the shared-return variance gains exactly N^2, the others nothing
    summed = run_variance_study(settings.model_copy(update={"reward_units": "sum", "out": tmp_path / "sum"}))
    assert summed.fits["variance"]["shared"].slope == pytest.approx(shared + 2.0, abs=1e-6)
    assert summed.fits["variance"]["guidance"].slope == pytest.approx(guidance, abs=1e-9)
    assert summed.fits["variance"]["dgpg"].slope == pytest.approx(result.fits["variance"]["dgpg"].slope, abs=1e-6)


# ------------------------------------------------------------------ --surrogate (stress test)
def test_parse_surrogate_accepts_text_json_and_configs() -> None:
    from guidedmarl.analytical.surrogates import BiasedConfig, NoisyConfig, RoundedConfig
    from guidedmarl.studies.variance.settings import parse_surrogate, surrogate_label

    assert parse_surrogate(None) is None and parse_surrogate("exact") is None and parse_surrogate(" none ") is None
    assert parse_surrogate("biased:beta=0.3") == BiasedConfig(beta=0.3, direction="random")
    assert parse_surrogate("biased:beta=1,direction=uniform") == BiasedConfig(beta=1.0, direction="uniform")
    assert parse_surrogate("noisy:sigma=0.3") == NoisyConfig(sigma=0.3)
    assert parse_surrogate("rounded:step=0.1") == RoundedConfig(step=0.1)
    assert parse_surrogate("rounded") == RoundedConfig()  # the config's defaults
    assert parse_surrogate('{"kind": "noisy", "sigma": 1.5}') == NoisyConfig(sigma=1.5)
    assert parse_surrogate({"kind": "biased", "beta": 0.1}) == BiasedConfig(beta=0.1)
    assert surrogate_label("biased:beta=1,direction=uniform") == "biased beta=1 (uniform)"
    assert [surrogate_label(s) for s in ("exact", "noisy:sigma=0.3", "rounded:step=0.5")] == [
        "exact", "noisy sigma=0.3", "rounded step=0.5"
    ]  # fmt: skip
    for bad, message in (
        ("biased:beta=-1", "biased.beta"),
        ("noisy:sigma=0.3,beta=2", "noisy.beta"),
        ("rounded:step=0", "rounded.step"),
        ("gaussian:sigma=1", "does not match any of the expected tags"),
        ("noisy:0.3", "expected key=value"),
        ('{"kind": "noisy", ', "invalid JSON"),
        ("biased:direction=sideways", "biased.direction"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_surrogate(bad)


def test_surrogate_changes_guidance_but_not_the_shared_return(tmp_path: Path) -> None:
    base = dict(domain="cloud", agents=[4, 8], rollouts=8, scenarios=2, bootstrap=0, threads=1, run_config=CLOUD_SMALL)
    exact = run_variance_study(VarianceSettings(**base, out=tmp_path / "exact"))
    biased = run_variance_study(VarianceSettings(**base, out=tmp_path / "b", surrogate="biased:beta=1"))
    var = {(r["N"], r["estimator"]): r["variance"] for r in exact.rows}
    var_b = {(r["N"], r["estimator"]): r["variance"] for r in biased.rows}
    for n in (4, 8):
        assert var_b[(n, "shared")] == var[(n, "shared")]  # same sampled actions, no model in (a)
        assert var_b[(n, "guidance")] != var[(n, "guidance")]
    doc = json.loads((tmp_path / "b" / "variance.json").read_text())
    assert doc["settings"]["surrogate"] == {"kind": "biased", "beta": 1.0, "direction": "random"}
    assert doc["resolved"]["surrogate"] == doc["settings"]["surrogate"]
    assert "surrogate biased beta=1" in (tmp_path / "b" / "variance.md").read_text()
    assert json.loads((tmp_path / "exact" / "variance.json").read_text())["resolved"]["surrogate"] is None
    assert "surrogate" not in (tmp_path / "exact" / "variance.md").read_text()

    # the option replaces a surrogate of the run settings; without it, the run settings decide
    noisy_cfg = {**CLOUD_SMALL, "guidance": {"surrogate": {"kind": "noisy", "sigma": 2.0}}}
    over = run_variance_study(
        VarianceSettings(**{**base, "run_config": noisy_cfg}, out=tmp_path / "over", surrogate="biased:beta=1")
    )
    assert [r["variance"] for r in over.rows] == [r["variance"] for r in biased.rows]
    new_style = {**CLOUD_SMALL, "learner": {"estimator": {"surrogate": {"kind": "noisy", "sigma": 2.0}}}}
    over = run_variance_study(
        VarianceSettings(**{**base, "run_config": new_style}, out=tmp_path / "over2", surrogate="biased:beta=1")
    )
    assert [r["variance"] for r in over.rows] == [r["variance"] for r in biased.rows]  # learner.estimator too
    from_cfg = run_variance_study(VarianceSettings(**{**base, "run_config": noisy_cfg}, out=tmp_path / "cfg"))
    assert json.loads((tmp_path / "cfg" / "variance.json").read_text())["resolved"]["surrogate"]["kind"] == "noisy"
    assert [r["variance"] for r in from_cfg.rows] != [r["variance"] for r in exact.rows]
    forced = run_variance_study(
        VarianceSettings(**{**base, "run_config": noisy_cfg}, out=tmp_path / "forced", surrogate="exact")
    )
    assert [r["variance"] for r in forced.rows] == [r["variance"] for r in exact.rows]  # "exact" removes it
    assert json.loads((tmp_path / "forced" / "variance.json").read_text())["resolved"]["surrogate"] is None

    with pytest.raises(ConfigError, match="surrogate: invalid surrogate 'noisy:sigma=-1': noisy.sigma"):
        validate_settings(VarianceSettings, {**base, "surrogate": "noisy:sigma=-1"})


def test_cli_study_variance_surrogate_option(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["study", "variance", "--domain", "cloud", "--agents", "4,8", "--rollouts", "8", "--scenarios", "2"]
    args += ["--set", "domain_config.warmup=2", "--horizon", "4", "--bootstrap", "0", "--threads", "1"]
    result = runner.invoke(app, [*args, "--surrogate", "rounded:step=0.1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = _check_outputs(out, [4, 8])
    assert doc["resolved"]["surrogate"] == {"kind": "rounded", "step": 0.1}
    assert "--surrogate rounded:step=0.1" in (out / "command.txt").read_text()
    json_spec = '{"kind": "noisy", "sigma": 0.3}'
    result = runner.invoke(app, [*args, "--surrogate", json_spec, "--out", str(tmp_path / "json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "json" / "variance.json").read_text())["resolved"]["surrogate"]["sigma"] == 0.3

    bad = runner.invoke(app, [*args, "--surrogate", "biased:beta=-0.5", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "biased.beta" in bad.output and "greater than or equal to 0" in bad.output
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------ continuous actions: the trainer's weight
def _steer():
    """The toy continuous "steering" problem of tests/test_continuous_guidance.py."""
    path = Path(__file__).with_name("test_continuous_guidance.py")
    spec = importlib.util.spec_from_file_location("guidedmarl_test_steer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_continuous_guidance_is_the_trainers_weight_with_the_policy_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    """For continuous actions the study measures the weight training uses: the difference
    against the policy mean (raw pathwise g would be another quantity, docs/theory_tests.md)."""
    from guidedmarl.guidance.estimator import StepInputs
    from guidedmarl.guidance.weights import guidance_weights

    steer = _steer()
    trainer = steer._trainer(alpha=0.5)
    seen: list[tuple] = []
    real = measure.guidance_weights

    def recording(model, actions, context, exact_difference=False, mean_action=None):  # noqa: ANN001, ANN202
        out = real(model, actions, context, exact_difference, mean_action=mean_action)
        seen.append((actions, mean_action, context, out))
        return out

    monkeypatch.setattr(measure, "guidance_weights", recording)
    batch = measure.collect(trainer, trainer.env, [0, 1, 2, 3] * 4, steer.HORIZON)
    assert len(seen) == steer.HORIZON
    for t, (actions, mean, context, _) in enumerate(seen):
        assert mean is not None and mean.shape == actions.shape
        active = batch.active[t]
        inputs = StepInputs(actions, mean, active, lambda context=context: context)
        torch.testing.assert_close(batch.guidance[t], trainer.estimator.on_step(inputs)["guidance"])  # the same weight
        raw = guidance_weights(trainer.model, actions, context)  # without the mean: the pathwise weight
        assert not torch.allclose(raw.reshape(batch.guidance[t].shape), batch.guidance[t])
    # and the score is the Gaussian one, (a - mu) / sigma^2
    assert batch.scores.shape == (steer.HORIZON, 16, steer.N, 1)


# ------------------------------------------------------------------ first-order bias
def test_both_weight_kinds_differ_by_half_the_squared_influence_on_bins(bins) -> None:
    """With the quadratic potential g_i - D_i = 1/2 ||z_i||^2 = 1/2 (size_i / capacity_a)^2 sample by sample.

    The sizes are replayed from the same scenario seeds (they do not depend on the actions), the
    chosen option is where the logit score onehot - pi is positive.
    """
    _, trainer = build(RunConfig(domain="bins", agents=8, envs=4, seed=2))
    seeds, steps = [11, 11, 12, 12], 3
    batch = measure.collect(trainer, trainer.env, seeds, steps, both_kinds=True)
    assert batch.first_order is not None and batch.exact_difference is not None
    torch.testing.assert_close(batch.guidance, batch.first_order)  # preset dgpg trains on the first-order weight
    env = bins.BinsEnv(4, 8, bins.BinsSettings())
    env.reset(seeds)
    for t in range(steps):
        chosen = batch.scores[t].argmax(-1)
        half_sq = 0.5 * (env.sizes / env.capacity[chosen]).square()
        torch.testing.assert_close(batch.first_order[t] - batch.exact_difference[t], half_sq.to(batch.guidance.dtype))
        env.step(chosen)


def _synthetic_batch(u: Tensor, v: Tensor, rollouts: int, seed: int) -> measure.Batch:
    """Scores s ~ N(0, 1) and weights D = <s, u_i> + noise, g = D + <s, v_i>: E[s D] = u_i, E[s (g - D)] = v_i."""
    gen = torch.Generator().manual_seed(seed)
    n, k = u.shape
    s = torch.randn(1, rollouts, n, k, generator=gen, dtype=torch.float64)
    d = (s * u).sum(-1) + 0.5 * torch.randn(1, rollouts, n, generator=gen, dtype=torch.float64)
    g = d + (s * v).sum(-1)
    active = torch.ones(1, rollouts, n, dtype=torch.bool)
    rewards = torch.zeros(1, rollouts, dtype=torch.float64)
    return measure.Batch(s, active, g, rewards, first_order=g, exact_difference=d)


def test_first_order_bias_recovers_a_known_bias_and_angle() -> None:
    u = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[0.3, 0.0], [0.0, -0.4], [0.2, 0.1]], dtype=torch.float64)
    got = measure.first_order_bias(_synthetic_batch(u, v, 20_000, 0), 4, 50, torch.Generator().manual_seed(1))
    want_relative = float(v.norm() / u.norm())
    want_cosine = float((u + v).flatten() @ u.flatten() / ((u + v).norm() * u.norm()))
    assert got["relative"] == pytest.approx(want_relative, rel=0.08), got
    assert got["relative_low"] < want_relative < got["relative_high"], got
    assert got["cosine"] == pytest.approx(want_cosine, abs=0.01), got
    # no bias: the relative size is at the noise floor and the directions agree
    none = measure.first_order_bias(_synthetic_batch(u, 0 * v, 20_000, 2), 4, 0, torch.Generator())
    assert none["relative"] < 0.02 and none["cosine"] == pytest.approx(1.0, abs=1e-3), none


def test_first_order_bias_needs_both_kinds(bins) -> None:
    _, trainer = build(RunConfig(domain="bins", agents=8, envs=2))
    batch = measure.collect(trainer, trainer.env, [1, 1], 2)
    with pytest.raises(ValueError, match="both_kinds"):
        measure.first_order_bias(batch, 1, 0, torch.Generator())


def test_a_model_without_the_other_weight_kind_names_the_switch(bins, monkeypatch: pytest.MonkeyPatch) -> None:
    from guidedmarl.errors import GuidanceError

    real = measure.guidance_weights

    def no_exact(model, actions, context, exact_difference=False, **kw):  # type: ignore[no-untyped-def]
        if exact_difference:
            raise GuidanceError("no influence for this model")
        return real(model, actions, context, exact_difference, **kw)

    monkeypatch.setattr(measure, "guidance_weights", no_exact)
    _, trainer = build(RunConfig(domain="bins", agents=8, envs=2))
    with pytest.raises(ConfigError, match="exact-difference weight.*no influence.*--no-first-order-bias"):
        measure.collect(trainer, trainer.env, [1, 1], 2, both_kinds=True)
    assert measure.collect(trainer, trainer.env, [1, 1], 2).first_order is None  # without it the study runs
