"""`check_domain` and `guidedmarl check`: the project's domains pass; broken copies fail, naming the mistake.

Each broken copy subclasses the bins example or the cloud domain and breaks one thing; its test
asserts that the check that owns the mistake fails and that the message names the method and the
problem. Everything runs on small settings (a few agents, horizons of 4-6 steps, 64 alignment samples).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from guidedmarl import DomainError, register_domain
from guidedmarl.analytical.model import SparseInfluence
from guidedmarl.cli import app
from guidedmarl.testing import CheckReport, check_domain
from guidedmarl_domains.cloud import CloudDomain
from guidedmarl_domains.cloud.model import CloudModel
from guidedmarl_domains.power.domain import PowerDomain
from guidedmarl_domains.traffic import TrafficDomain

torch.set_num_threads(1)

FAST = {"steps": 4, "alignment_samples": 64}
CLOUD = {"horizon": 6, "warmup": 2}
BINS = {"horizon": 4, "agents_per_bin": 2}


def checked(domain: Any, **kwargs: Any) -> CheckReport:
    return check_domain(domain, **{**FAST, **kwargs})


def failed(report: CheckReport, name: str, *fragments: str) -> str:
    """Assert that check ``name`` failed with every fragment in its message (and the report is not ok)."""
    result = report[name]
    assert result.status == "fail", report.table()
    assert not report.ok
    for fragment in fragments:
        assert fragment in result.message, result.message
    return result.message


# ============================================================================ the project's domains pass
@pytest.fixture(scope="module")
def power() -> PowerDomain:
    return PowerDomain.from_config(None, {"horizon": 4})  # type: ignore[return-value]


@pytest.mark.parametrize("name", ["cloud", "power", "traffic", "bins"])
def test_project_domains_pass(name: str, bins: Any, power: PowerDomain) -> None:
    domain = {"cloud": lambda: CloudDomain.from_config(6, CLOUD), "power": lambda: power,
              "traffic": lambda: TrafficDomain.from_config(6, {"network": "braess", "horizon": 5}),
              "bins": lambda: bins.BinsDomain.from_config(8, BINS)}[name]()
    report = checked(domain)
    assert report.ok, report.table()
    report.raise_if_failed()  # no error
    statuses = {r.name: r.status for r in report.results}
    assert len(statuses) == 10 and set(statuses.values()) <= {"pass", "skip", "info"}
    expected_skips = {"cloud": set(), "power": {"model: affine in one-hot"}, "traffic": set(),
                      "bins": {"model: influence"}}[name]
    assert {k for k, v in statuses.items() if v == "skip"} == expected_skips
    alignment = report["model: alignment"]
    assert alignment.status == "info" and alignment.figures["samples"] == 64
    assert "Spearman rho" in alignment.message and "n = 64" in alignment.message
    assert "model: alignment" in report.table() and "0 failed" in report.table()


def test_bins_alignment_is_perfect_and_a_threshold_makes_it_a_check(bins: Any) -> None:
    """bins' reward is minus its potential (up to a constant factor): the rank correlation is 1."""
    domain = bins.BinsDomain.from_config(8, BINS)
    report = checked(domain, alignment_threshold=0.9)
    assert report["model: alignment"].status == "pass"
    assert report["model: alignment"].figures["spearman"] == pytest.approx(1.0)
    assert report["model: alignment"].figures["agreement"] == 1.0
    strict = checked(domain, alignment_threshold=1.5)
    failed(strict, "model: alignment", "threshold +1.500")


def test_a_domain_without_model_and_a_batch_of_one(bins: Any) -> None:
    class ModelFree(bins.BinsDomain):
        def make_model(self) -> None:
            return None

    report = checked(ModelFree.from_config(8, BINS), num_envs=1)
    assert report.ok, report.table()
    assert [r.status for r in report.results] == ["pass"] * 4 + ["skip"] * 6
    assert "make_model() returned None" in report["model: alignment"].message
    assert "copies of seed 0 in one batch stayed identical" in report["env: determinism"].message


# ============================================================================ broken environments (bins)
def broken_bins(bins: Any, env_cls: type | None = None, model_cls: type | None = None) -> Any:
    """A bins domain whose env and/or model are replaced by the given subclasses."""

    class Broken(bins.BinsDomain):
        name = "broken_bins"

        def make_env(self, num_envs: int) -> Any:
            return (env_cls or bins.BinsEnv)(num_envs, self.num_agents, self.settings)

        def make_model(self) -> Any:
            base = super().make_model()
            return model_cls(num_actions=base.num_actions) if model_cls else base

    return Broken.from_config(8, BINS)


def with_step(bins: Any, edit: Any) -> type:
    """A BinsEnv whose every returned Step (reset and step) goes through ``edit(env, step)``."""

    class Env(bins.BinsEnv):
        def _observe(self, reward: torch.Tensor, done: bool) -> Any:
            return edit(self, super()._observe(reward, done))

    return Env


def test_wrong_observation_width_is_named(bins: Any) -> None:
    env = with_step(bins, lambda env, s: dataclasses.replace(s, obs=torch.cat([s.obs, s.obs[..., :1]], -1)))
    report = checked(broken_bins(bins, env))
    failed(report, "env: step tensors", "Env.reset: obs must have shape [E, N, obs_dim] = [2, 8, 5]", "[2, 8, 6]")
    assert all(report[name].status == "skip" for name in ("env: horizon", "model: alignment"))


def test_wrong_reward_shape_is_named(bins: Any) -> None:
    env = with_step(bins, lambda env, s: dataclasses.replace(s, reward=s.reward.unsqueeze(-1)))
    failed(checked(broken_bins(bins, env)), "env: step tensors", "Env.reset: reward must have shape [E] = [2]",
           "got float32 [2, 1]")


def test_non_bool_active_mask_is_named(bins: Any) -> None:
    env = with_step(bins, lambda env, s: dataclasses.replace(s, active=s.active.float()))
    failed(checked(broken_bins(bins, env)), "env: step tensors", "active must be a bool tensor of shape [E, N] = [2, 8]",
           "got float32 [2, 8]")


def test_nan_in_the_state_is_named(bins: Any) -> None:
    def nan_after_two_steps(env: Any, s: Any) -> Any:
        if env.t == 2:
            s.state = s.state.clone()  # bins' state is an expanded view: write one entry only
            s.state[0, 1] = float("nan")
        return s

    failed(checked(broken_bins(bins, with_step(bins, nan_after_two_steps))), "env: step tensors",
           "Env.step (step 1): state (float32 [2, 4]) has 1 NaN or infinite value(s)")


def test_accepting_bad_actions_is_named(bins: Any) -> None:
    class Lenient(bins.BinsEnv):
        def check_actions(self, actions: torch.Tensor) -> torch.Tensor:
            return actions

    failed(checked(broken_bins(bins, Lenient)), "env: bad actions refused",
           "Lenient.check_actions accepted option 4 (num_actions = 4)")

    class NoCheckInStep(bins.BinsEnv):
        def step(self, actions: torch.Tensor) -> Any:
            return super().step(actions.clamp(0, self.m - 1))

    failed(checked(broken_bins(bins, NoCheckInStep)), "env: bad actions refused",
           "NoCheckInStep.step accepted option 4", "check_actions")


def test_ignored_horizon_is_named(bins: Any) -> None:
    env = with_step(bins, lambda env, s: dataclasses.replace(s, done=torch.zeros_like(s.done)))
    failed(checked(broken_bins(bins, env)), "env: horizon", "done must be True in every environment", "step 4 of horizon 4")


def test_unseeded_randomness_is_named(bins: Any) -> None:
    class Unseeded(bins.BinsEnv):
        def _draw_sizes(self) -> None:
            self.sizes = torch.rand(self.num_envs, self.n) + 0.5  # global generator: not a function of the seeds

    report = checked(broken_bins(bins, Unseeded))
    failed(report, "env: determinism", "Unseeded: reset([0, 1]) twice with the same actions gave different obs")
    assert report["model: exogeneity"].status == "skip" and report["model: alignment"].status == "skip"


# ============================================================================ broken models (bins)
def test_state_and_reference_dimension_mismatch_is_named(bins: Any) -> None:
    class ShortReference(bins.BinsModel):
        def reference_state(self, context: Any) -> torch.Tensor:
            return super().reference_state(context)[:, :-1]

    failed(checked(broken_bins(bins, model_cls=ShortReference)), "model: state and reference",
           "ShortReference: reference_state returned x_ref float32 [2, 3] but system_state returned x float32 [2, 4]")


def test_nan_in_the_model_state_is_named(bins: Any) -> None:
    class NaNState(bins.BinsModel):
        def system_state(self, actions: torch.Tensor, context: Any) -> torch.Tensor:
            return super().system_state(actions, context) / 0.0 * 0.0

    failed(checked(broken_bins(bins, model_cls=NaNState)), "model: state and reference",
           "NaNState.system_state returned 8 NaN or infinite value(s)")


def test_raw_errors_in_a_model_method_name_the_method(bins: Any) -> None:
    class Crashing(bins.BinsModel):
        def reference_state(self, context: Any) -> torch.Tensor:
            return context.sizes @ context.capacity.unsqueeze(0)  # a shape error inside the user's code

    failed(checked(broken_bins(bins, model_cls=Crashing)), "model: state and reference",
           "Crashing.reference_state raised RuntimeError")


def test_non_affine_discrete_state_map_is_named(bins: Any) -> None:
    class Quadratic(bins.BinsModel):
        def system_state(self, actions: torch.Tensor, context: Any) -> torch.Tensor:
            u = super().system_state(actions, context)
            return u + 0.5 * u.square()  # load enters twice: not affine in an agent's one-hot row

    failed(checked(broken_bins(bins, model_cls=Quadratic)), "model: affine in one-hot",
           "Quadratic.system_state is not affine in agent", "one-hot row", "the derivative predicts")


def test_reference_computed_from_the_actions_is_named(bins: Any) -> None:
    class Remembering(bins.BinsModel):
        def system_state(self, actions: torch.Tensor, context: Any) -> torch.Tensor:
            self.last = super().system_state(actions, context)
            return self.last

        def reference_state(self, context: Any) -> torch.Tensor:
            return 0.5 * super().reference_state(context) + 0.5 * self.last.mean(0, keepdim=True)

    failed(checked(broken_bins(bins, model_cls=Remembering)), "model: exogeneity",
           "Remembering.reference_state is computed from the actions", "autograd graph")


# ============================================================================ broken models (cloud)
def broken_cloud(model_cls: type) -> CloudDomain:
    class Broken(CloudDomain):
        name = "broken_cloud"

        def make_model(self) -> CloudModel:
            base = super().make_model()
            return model_cls(base.num_actions, base.layer, base.eta, base.max_utilisation)

    return Broken.from_config(6, CLOUD)  # type: ignore[return-value]


def test_wrong_influence_shape_is_named() -> None:
    class Flat(CloudModel):
        def influence(self, actions: torch.Tensor, context: Any) -> SparseInfluence:
            z = super().influence(actions, context)
            return SparseInfluence(index=z.index[..., 0], value=z.value[..., 0])

    failed(checked(broken_cloud(Flat)), "model: influence",
           "Flat.influence: index must have shape [E, N, K] = [2, 6, K], got [2, 6]")


def test_out_of_range_influence_index_is_named() -> None:
    class Shifted(CloudModel):
        def influence(self, actions: torch.Tensor, context: Any) -> SparseInfluence:
            z = super().influence(actions, context)
            return SparseInfluence(index=z.index + 2, value=z.value)

    failed(checked(broken_cloud(Shifted)), "model: influence",
           "Shifted.influence: index values must lie in [0, 5] (x has D = 6 components)")


def test_closed_form_influence_that_disagrees_with_autograd_is_named() -> None:
    class MemoryTwice(CloudModel):
        def influence(self, actions: torch.Tensor, context: Any) -> SparseInfluence:
            z = super().influence(actions, context)
            return SparseInfluence(index=z.index, value=z.value * torch.tensor([1.0, 2.0]))  # memory share doubled

    message = failed(checked(broken_cloud(MemoryTwice)), "model: influence",
                     "MemoryTwice.influence disagrees with the autograd Jacobian of system_state")
    assert "[environment, agent, component]" in message and "closed form" in message


def test_reference_that_moves_with_the_actions_is_named() -> None:
    class FromCommitted(CloudModel):
        """A classic mistake: the target is built from the current (policy-made) load, not the offered load."""

        def reference_state(self, context: Any) -> torch.Tensor:
            util = (context.committed / context.capacity).reshape(context.committed.shape[0], -1)
            return 0.5 * super().reference_state(context) + 0.5 * util.to(context.demand.dtype)

    failed(checked(broken_cloud(FromCommitted)), "model: exogeneity",
           "FromCommitted.reference_state moves with the actions", "copies of scenario", "whose agents acted differently")


def test_influence_listing_a_component_twice_is_named() -> None:
    class Twice(CloudModel):
        def influence(self, actions: torch.Tensor, context: Any) -> SparseInfluence:
            z = super().influence(actions, context)
            return SparseInfluence(index=z.index[..., :1].expand_as(z.index), value=z.value)

    failed(checked(broken_cloud(Twice)), "model: influence", "Twice.influence: agent 0 (environment 0) lists component",
           "twice with non-zero values")


def test_a_gram_matrix_that_disagrees_with_the_backward_pass_is_named() -> None:
    """A LinearOutputModel whose gram() forgets the line flows (M = diag(1/s^2) only) fails the guidance check."""
    from guidedmarl_domains.power.model import PowerModel

    class OutputsOnly(PowerModel):
        def gram(self, context: Any) -> torch.Tensor:
            return torch.diag(context.scale.double().square().reciprocal())

    class Broken(PowerDomain):
        name = "broken_power"

        def make_model(self) -> PowerModel:
            base = super().make_model()
            return OutputsOnly(base.balance_weight, self.num_agents, self.system.network.ptdf_gen.shape[0])

    domain = Broken.from_config(None, {"horizon": 4, "balance_weight": 0.0})
    failed(checked(domain), "guidance weights", "OutputsOnly: the Gram-matrix weights",
           "differ from the backward pass through system_state", "check gram(), outputs() and output_slopes()")


def test_raise_if_failed_lists_the_failures() -> None:
    class Shifted(CloudModel):
        def influence(self, actions: torch.Tensor, context: Any) -> SparseInfluence:
            z = super().influence(actions, context)
            return SparseInfluence(index=z.index + 2, value=z.value)

    report = checked(broken_cloud(Shifted))
    with pytest.raises(DomainError, match=r"domain 'broken_cloud' failed 2 of 10 checks:\n- model: influence: Shifted"):
        report.raise_if_failed()
    assert "FAIL" in report.table()


# ============================================================================ command line
runner = CliRunner()


def test_cli_check_passes_on_cloud_and_prints_the_table() -> None:
    result = runner.invoke(app, ["check", "--domain", "cloud", "--agents", "6", "--steps", "3",
                                 "--set", "domain_config.horizon=4", "--set", "domain_config.warmup=2"])
    assert result.exit_code == 0, result.output
    assert "model: alignment" in result.output and "0 failed" in result.output


def test_cli_check_exits_1_on_a_failing_domain(bins: Any) -> None:
    class Lenient(bins.BinsEnv):
        def check_actions(self, actions: torch.Tensor) -> torch.Tensor:
            return actions

    class LenientBins(bins.BinsDomain):
        def make_env(self, num_envs: int) -> Any:
            return Lenient(num_envs, self.num_agents, self.settings)

    register_domain(LenientBins, "lenient_bins_for_cli_test", replace=True)
    result = runner.invoke(app, ["check", "--domain", "lenient_bins_for_cli_test", "--agents", "4", "--steps", "2",
                                 "--set", "domain_config.horizon=3"])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "Lenient.check_actions accepted" in result.output.replace("\n", " ")


def test_cli_check_exits_2_on_config_errors() -> None:
    for args, text in ((["--domain", "nope"], "unknown domain 'nope'"),
                       (["--domain", "cloud", "--set", "domain_config.candidates=0"], "candidates: Input should be"),
                       (["--domain", "cloud", "--set", "ppo.learning_rate=1"], "domain_config.KEY=VALUE"),
                       (["--domain", "power", "--agents", "50"], "--agents 6")):
        result = runner.invoke(app, ["check", *args])
        assert result.exit_code == 2, (args, result.output)
        assert text in result.output, result.output
