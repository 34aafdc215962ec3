"""Learners as plug-ins: presets, registries, the example estimator, the mean-field critic,
domains loaded by reference, and errors at the boundary of a user's environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from guidedmarl import RunConfig
from guidedmarl.cli import app
from guidedmarl.config import build_config
from guidedmarl.errors import ConfigError, DomainError, GuidedMarlError
from guidedmarl.experiment import build, run_experiment
from guidedmarl.learners import PRESETS, resolve_learner

ROOT = Path(__file__).resolve().parents[1]
SMALL_CLOUD = {"horizon": 6, "warmup": 2}
runner = CliRunner()


def test_presets_fill_the_learner_and_overrides_merge() -> None:
    cfg = build_config({"domain": "cloud", "algo": "dgpg_exact", "learner": {"estimator": {"scaling": "scale"}}})
    est = cfg.learner.estimator
    assert (cfg.learner.critic.kind, est.kind) == ("central", "dgpg")
    assert est.weight == "exact_difference" and est.scaling == "scale"  # type: ignore[attr-defined]
    assert build_config({"domain": "cloud", "algo": "ippo"}).learner.critic.kind == "local"
    assert build_config({"domain": "cloud", "algo": "mfac"}).learner.critic.kind == "mean_field"
    assert {"dgpg", "dgpg_exact", "mappo", "ippo", "mfac"} <= set(PRESETS.names())


def test_a_preset_fixes_its_kinds_and_fields_are_validated() -> None:
    with pytest.raises(ConfigError, match="estimator.kind: preset 'mappo' uses estimator 'shared_return'"):
        resolve_learner("mappo", {"estimator": {"kind": "dgpg"}})
    with pytest.raises(ConfigError, match="  learner: critic.kind: preset 'mappo' uses critic 'central', got 'local'"):
        build_config({"domain": "cloud", "algo": "mappo", "learner": {"critic": {"kind": "local"}}})
    with pytest.raises(ConfigError, match=r"learner.estimator: weight: Input should be 'first_order' or"):
        build_config({"domain": "cloud", "learner": {"estimator": {"weight": "second_order"}}})
    with pytest.raises(ConfigError, match="learner.estimator: alpha.constant.value: Input should be less than or equal to 1"):
        build_config({"domain": "cloud", "learner": {"estimator": {"alpha": {"kind": "constant", "value": 3}}}})
    with pytest.raises(ConfigError, match="unknown critic 'centrall' \\(did you mean 'central'\\?\\)"):
        build_config({"domain": "cloud", "algo": "mappo", "learner": {"critic": {"kind": "centrall"}}})
    with pytest.raises(ConfigError, match="learner.critic: width: Extra inputs are not permitted"):
        build_config({"domain": "cloud", "learner": {"critic": {"kind": "central", "width": 3}}})


def test_the_example_estimator_plugs_in_without_touching_the_library(example, tmp_path: Path) -> None:
    module = example("custom_estimator")
    cfg = RunConfig(domain="bins", algo="dgpg_clipped", agents=8, episodes=2, seed=3, out=tmp_path / "clip",
                    learner={"estimator": {"clip": 0.5}}, eval={"test_scenarios": 3, "validation_scenarios": 2})
    example("custom_domain")  # registers `bins`
    domain, trainer = build(cfg)
    assert isinstance(trainer.estimator, module.ClippedGuidanceEstimator)
    # the clipped advantage is bounded by (1 - alpha) |A_hat| + alpha c
    ro = trainer.collect(domain.train_seeds(0, 1, 3))
    adv = torch.randn(ro.active.shape)
    mixed = trainer.estimator.advantage(adv, ro.estimator_records, ro.active, 0.0)
    alpha = trainer.estimator.alpha(0.0)
    from guidedmarl.guidance import masked_standardize

    bound = (1 - alpha) * masked_standardize(adv, ro.active).abs() + alpha * 0.5 + 1e-6
    assert bool((mixed.abs() <= bound).all())
    unclipped = trainer.estimator.scale_guidance(ro.guidance, ro.active).abs().max()
    assert float(unclipped) > 0.5  # so the clip is active in this batch
    result = run_experiment(cfg)
    assert result.best_episode >= 1 and (tmp_path / "clip" / "summary.json").is_file()


def test_example_estimator_from_the_command_line_and_its_config_reruns(tmp_path: Path) -> None:
    plugin = str(ROOT / "examples" / "custom_estimator.py")
    args = ["run", "--plugin", plugin, "--domain", "cloud", "--algo", "dgpg_clipped", "--agents", "6",
            "--episodes", "1", "--set", "learner.estimator.clip=1.5", "--set", "domain_config.horizon=5",
            "--set", "eval.test_scenarios=2", "--set", "eval.validation_scenarios=2", "--set", "eval.heuristics=false",
            "--out", str(tmp_path / "a"), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["run", "--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b"), "--quiet"])
    assert again.exit_code == 0, again.output
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a[-1]["eval/test_reward"] == b[-1]["eval/test_reward"]


@pytest.mark.parametrize("domain, settings", [("cloud", SMALL_CLOUD), ("power", {"horizon": 6})])
def test_mean_field_learner_runs_on_cloud_and_power(domain: str, settings: dict, tmp_path: Path) -> None:
    cfg = RunConfig(domain=domain, algo="mfac", agents=None if domain == "power" else 8, episodes=2, threads=1,
                    domain_config=settings, out=tmp_path, eval={"test_scenarios": 2, "validation_scenarios": 2})
    d, trainer = build(cfg)
    ro = trainer.collect(d.train_seeds(0, 1, 0))
    field = ro.critic_inputs["mean_field"]
    assert field.shape == (*ro.active.shape, trainer.env.spec.mean_field_dim)
    assert ro.values.shape == ro.active.shape  # one value per agent
    metrics = trainer.update(ro, 0.0)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_cloud_mean_field_is_the_load_the_others_send_to_my_candidates() -> None:
    cfg = RunConfig(domain="cloud", agents=6, domain_config=SMALL_CLOUD | {"candidates": 3})
    domain, _ = build(cfg)
    env = domain.make_env(1)
    step = env.reset([5])
    actions = torch.randint(0, 3, (1, 6), generator=torch.Generator().manual_seed(0))
    field = env.mean_field(actions, step.active).reshape(1, 6, 3, 2)
    jobs = env.current_jobs()
    chosen = env.candidates[torch.arange(6), actions[0]]
    for i in range(6):
        for k in range(3):
            server = int(env.candidates[i, k])
            others = [j for j in range(6) if j != i and bool(step.active[0, j]) and int(chosen[j]) == server]
            cpu = sum(float(jobs.cpu[0, j]) for j in others) / float(env.capacity[server, 0])
            assert float(field[0, i, k, 0]) == pytest.approx(cpu, abs=1e-5)


def test_default_mean_field_excludes_the_agent_itself() -> None:
    from guidedmarl.env import MultiAgentVecEnv

    class Tiny(MultiAgentVecEnv):
        from guidedmarl.env import EnvSpec

        spec = EnvSpec(num_agents=3, obs_dim=1, state_dim=1, horizon=1, num_actions=2)
        num_envs = 1

        def reset(self, seeds):  # pragma: no cover - unused
            raise NotImplementedError

        def step(self, actions):  # pragma: no cover - unused
            raise NotImplementedError

        def model_context(self):  # pragma: no cover - unused
            return None

    field = Tiny().mean_field(torch.tensor([[0, 1, 1]]), torch.tensor([[True, True, False]]))
    # agent 0 sees agent 1 only (agent 2 is inactive); agent 1 sees agent 0
    torch.testing.assert_close(field[0, :2], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def test_domain_from_a_file_or_module_reference(tmp_path: Path) -> None:
    ref = f"{ROOT / 'examples' / 'custom_domain.py'}:BinsDomain"
    args = ["run", "--domain", ref, "--agents", "6", "--episodes", "1", "--set", "eval.test_scenarios=2",
            "--set", "eval.validation_scenarios=1", "--out", str(tmp_path / "bins"), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bins" / "summary.json").is_file()
    bad = runner.invoke(app, ["run", "--domain", "no_such_module_xyz:Thing", "--out", str(tmp_path / "x"), "--quiet"])
    assert bad.exit_code == 2 and "cannot import no_such_module_xyz" in bad.output
    missing = runner.invoke(app, ["run", "--domain", f"{ROOT / 'examples' / 'custom_domain.py'}:Nope", "--quiet",
                                  "--out", str(tmp_path / "y")])
    assert missing.exit_code == 2 and "has no attribute 'Nope'" in missing.output


class _Broken:
    """Wrap the bins environment and break one output of ``step``."""

    @staticmethod
    def domain(bins, what: str):
        class BrokenEnv(bins.BinsEnv):
            def step(self, actions):
                out = super().step(actions)
                if what == "obs":
                    out.obs = out.obs[..., :-1]
                elif what == "reward":
                    out.reward = out.reward.unsqueeze(-1)
                elif what == "active":
                    out.active = out.active.float()
                elif what == "nan":
                    out.reward = out.reward * float("nan")
                elif what == "obs_nan":
                    out.obs = out.obs.clone()
                    out.obs[0, 0, 0], out.obs[0, 1, 0] = float("nan"), float("inf")
                elif what == "state":
                    out.state = out.state[:, :-1]
                elif what == "done":
                    out.done = out.done.float()
                elif what == "info":
                    out.info = {**out.info, "load": torch.zeros(len(out.reward), 2)}
                return out

        class BrokenDomain(bins.BinsDomain):
            name = f"bins_broken_{what}"

            def make_env(self, num_envs):
                return BrokenEnv(num_envs, self.num_agents, self.settings)

        return BrokenDomain


@pytest.mark.parametrize(
    "what, error, message",
    [
        ("obs", DomainError, r"BrokenEnv.step: obs must have shape \[E, N, obs_dim\]"),
        ("reward", DomainError, r"BrokenEnv.step: reward must have shape \[E\]"),
        ("active", DomainError, r"BrokenEnv.step: active must be a bool tensor"),
        ("nan", GuidedMarlError, r"BrokenEnv.step returned a NaN or infinite reward at step 0"),
        ("obs_nan", DomainError, r"BrokenEnv.step: obs \(float32 \[1, 6, 3\]\) has 2 NaN or infinite value\(s\)"),
        ("state", DomainError, r"BrokenEnv.step: state must have shape \[E, state_dim\] = \[1, 2\], got float32 \[1, 1\]"),
        ("done", DomainError, r"BrokenEnv.step: done must be a bool tensor of shape \[E\] = \[1\], got float32 \[1\]"),
        ("info", DomainError, r"BrokenEnv.step: info\['load'\] must have shape \[E\] = \[1\], got float32 \[1, 2\]"),
    ],
)
def test_a_broken_environment_is_reported_where_it_returns(bins, what: str, error: type, message: str) -> None:
    from guidedmarl.domain import register_domain

    register_domain(_Broken.domain(bins, what), replace=True)
    cfg = RunConfig(domain=f"bins_broken_{what}", agents=6, episodes=1)
    domain, trainer = build(cfg)
    with pytest.raises(error, match=message):
        trainer.collect(domain.train_seeds(0, 1, 0))


def test_library_errors_exit_1_with_one_line_and_debug_shows_the_traceback(bins, tmp_path: Path) -> None:
    from guidedmarl.domain import register_domain

    register_domain(_Broken.domain(bins, "reward"), replace=True)
    args = ["run", "--domain", "bins_broken_reward", "--agents", "6", "--episodes", "1", "--quiet",
            "--out", str(tmp_path / "r")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "reward must have shape [E]" in result.output and "Traceback" not in result.output
    debug = runner.invoke(app, [*args, "--debug"])
    assert debug.exit_code == 1 and "Traceback" in debug.output


def test_no_domain_given_is_a_clear_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--out", str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 2 and "domain: Field required" in result.output


def test_errors_share_one_base_and_the_base_imports_no_torch() -> None:
    import subprocess

    code = "import sys, guidedmarl.errors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    from guidedmarl.analytical.layers import AllocationSolverError, InfeasibleProgramError
    from guidedmarl.errors import SolverError
    from guidedmarl_domains.power.cases import CaseError
    from guidedmarl_domains.power.program import DispatchInfeasibleError, DispatchSolverError

    for cls in (AllocationSolverError, InfeasibleProgramError, DispatchInfeasibleError, DispatchSolverError):
        assert issubclass(cls, SolverError)
    assert issubclass(CaseError, ConfigError)
