"""Metric names and loggers: namespaced rows, CleanRL's SPS, TensorBoard keyed by steps and episodes, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guidedmarl.cli import app
from guidedmarl.config import RunConfig
from guidedmarl.experiment import run_experiment
from guidedmarl.loggers import read_metrics, upgrade_row

runner = CliRunner()
TINY = ["--domain", "cloud", "--agents", "6", "--episodes", "3", "--threads", "1", "--quiet",
        "--set", "domain_config.horizon=5", "--set", "domain_config.warmup=2", "--set", "eval.test_scenarios=2",
        "--set", "eval.validation_scenarios=2", "--set", "eval.heuristics=false"]  # fmt: skip


def test_rows_are_namespaced_and_sps_is_cumulative_env_steps(tmp_path: Path) -> None:
    cfg = RunConfig(domain="cloud", agents=6, episodes=3, envs=2, out=tmp_path / "r", domain_config={"horizon": 5, "warmup": 2},
                    eval={"test_scenarios": 2, "validation_scenarios": 2, "heuristics": False})  # fmt: skip
    rows = run_experiment(cfg).metrics
    for row in rows[1:]:
        plain = [k for k in row if "/" not in k]
        assert plain == ["episode", "global_step", "agent_steps"], plain
        assert {k.split("/")[0] for k in row if "/" in k} == {"train", "guidance", "env", "time", "eval"}
    assert [r["global_step"] for r in rows] == [0, 10, 20, 30]  # 2 environments x horizon 5 per episode
    assert [r["agent_steps"] for r in rows] == [0, 60, 120, 180]  # x N = 6
    for row in rows[1:]:
        elapsed = row["global_step"] / row["time/SPS"]  # SPS = steps so far / seconds so far
        assert row["agent_steps"] / row["time/agent_steps_per_second"] == pytest.approx(elapsed)
    seconds = [r["global_step"] / r["time/SPS"] for r in rows[1:]]
    assert seconds == sorted(seconds)  # cumulative wall time


def test_legacy_metric_names_are_read_with_todays_names(tmp_path: Path) -> None:
    old = [{"episode": 0, "test_reward": -3.0}, {"episode": 1, "episodic_return": -5.0, "test_reward": -2.0,
                                                 "alpha": 0.9, "test_mean_wait_steps": 1.5}]  # fmt: skip
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    rows = read_metrics(tmp_path / "metrics.json")
    assert rows[1] == {"episode": 1, "train/episodic_return": -5.0, "eval/test_reward": -2.0, "guidance/alpha": 0.9,
                       "eval/test_mean_wait_steps": 1.5}  # fmt: skip
    assert upgrade_row(rows[1]) is rows[1]


def test_tensorboard_has_one_scalar_per_metric_keyed_by_steps_and_episodes(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="TensorBoard is an optional extra (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = runner.invoke(app, ["run", *TINY, "--log", "tensorboard", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "metrics.json").read_text())
    axes = {}
    for axis in ("env_steps", "episodes"):
        acc = EventAccumulator(str(out / "tensorboard" / axis))
        acc.Reload()
        axes[axis] = acc
        tags = set(acc.Tags()["scalars"])
        assert {"train/value_loss", "eval/test_reward", "guidance/alpha", "time/SPS"} <= tags
    assert [e.step for e in axes["env_steps"].Scalars("eval/test_reward")] == [int(r["global_step"]) for r in rows]
    assert [e.step for e in axes["episodes"].Scalars("eval/test_reward")] == [0, 1, 2, 3]
    values = [e.value for e in axes["episodes"].Scalars("train/value_loss")]
    assert values == pytest.approx([r["train/value_loss"] for r in rows[1:]])


def test_tensorboard_after_resume_has_each_step_once(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="TensorBoard is an optional extra (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = RunConfig(domain="cloud", agents=6, episodes=4, out=tmp_path / "r", log=["tensorboard"],
                    domain_config={"horizon": 5, "warmup": 2}, eval={"test_scenarios": 2, "heuristics": False})  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, on_episode=lambda e, r: (_ for _ in ()).throw(KeyboardInterrupt) if e == 1 else None)
    run_experiment(cfg, resume=True)
    acc = EventAccumulator(str(cfg.out / "tensorboard" / "episodes"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("eval/test_reward")] == [0, 1, 2, 3, 4]


def test_unknown_logger_and_missing_wandb(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["run", *TINY, "--log", "mlflow", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "log.0" in bad.output and "tensorboard" in bad.output
    try:
        import wandb  # noqa: F401
    except ImportError:
        missing = runner.invoke(app, ["run", *TINY, "--log", "wandb", "--out", str(tmp_path / "w")])
        assert missing.exit_code == 2 and "needs the wandb package" in missing.output


def test_the_run_folder_records_versions_commit_and_threads(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", *TINY, "--out", str(out)]).exit_code == 0
    session = json.loads((out / "provenance.json").read_text())["sessions"][0]
    from importlib import metadata

    assert session["guidedmarl"] == metadata.version("guidedmarl") and session["threads"] == 1
    assert session["libraries"]["torch"] == metadata.version("torch") and session["python"]
    git = session["git"]
    assert git is None or (len(git["commit"]) == 40 and isinstance(git["dirty"], bool))
    assert json.loads((out / "summary.json").read_text())["threads"] == 1


class _FakeWandb:
    """Stands in for the wandb package: records what the logger calls."""

    def __init__(self) -> None:
        self.inits: list[dict[str, object]] = []
        self.logged: list[tuple[dict[str, float], int]] = []
        self.finished = 0
        fake = self

        class _Run:
            def log(self, data: dict[str, float], step: int) -> None:
                fake.logged.append((data, step))

            def finish(self) -> None:
                fake.finished += 1

        self._run = _Run

    def init(self, **kwargs: object):
        self.inits.append(kwargs)
        return self._run()


def _wandb_config(tmp_path: Path) -> RunConfig:
    return RunConfig(domain="cloud", agents=6, episodes=3, out=tmp_path / "w", log=["wandb"],
                     domain_config={"horizon": 5, "warmup": 2},
                     eval={"test_scenarios": 2, "validation_scenarios": 2, "heuristics": False})  # fmt: skip


def test_wandb_logger_logs_every_row_by_env_steps_and_a_resume_continues_its_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = _wandb_config(tmp_path)

    def stop(episode: int, row: dict[str, float]) -> None:
        if episode == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, on_episode=stop)
    result = run_experiment(cfg, resume=True)
    first, second = fake.inits
    assert first["id"] == second["id"] == (cfg.out / "wandb_id.txt").read_text()
    assert first["resume"] == "allow" and first["dir"] == str(cfg.out) and first["config"]["seed"] == 0
    assert fake.finished == 2  # each session closes its W&B run
    steps = [step for _, step in fake.logged]
    assert steps == [int(r["global_step"]) for r in result.metrics]  # every row once, keyed by env steps
    final = fake.logged[-1][0]
    assert final["eval/test_reward"] == result.metrics[-1]["eval/test_reward"] and final["episode"] == 3


def test_wandb_offline_run_is_written_where_wandb_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="wandb is optional (pip install wandb); not installed here")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = _wandb_config(tmp_path)
    run_experiment(cfg)
    run_id = (cfg.out / "wandb_id.txt").read_text()
    files = list((cfg.out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 0


def test_a_budget_in_environment_steps_sets_the_episodes(tmp_path: Path) -> None:
    out = tmp_path / "steps"
    result = runner.invoke(app, ["run", *[a for a in TINY if a not in ("--episodes", "3")], "--env-steps", "25",
                                 "--envs", "2", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["env_steps"] == 25 and config["episodes"] == 3  # ceil(25 / (2 environments x horizon 5))
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["global_step"] for r in rows] == [0, 10, 20, 30]
    again = runner.invoke(app, ["run", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "again"), "--quiet"])
    assert again.exit_code == 0 and len(json.loads((tmp_path / "again" / "metrics.json").read_text())) == 4
