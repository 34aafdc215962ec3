"""Resume, status and overwrite protection: a run stopped by a real signal ends with the numbers of one never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from guidedmarl.atomic import unreadable_files
from guidedmarl.cli import app
from guidedmarl.config import RunConfig
from guidedmarl.errors import CheckpointError, ConfigError
from guidedmarl.experiment import run_experiment
from guidedmarl.runs import load_run

runner = CliRunner()
ARGS = ["--domain", "cloud", "--agents", "8", "--episodes", "6", "--seed", "5", "--threads", "1", "--quiet",
        "--set", "domain_config.horizon=12", "--set", "domain_config.warmup=4",
        "--set", "eval.test_scenarios=4", "--set", "eval.validation_scenarios=3"]  # fmt: skip
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "guidedmarl.cli", *args]


def _numbers(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """Every metric but wall-clock ones (``time/...``): those must match exactly."""
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def _summary_numbers(out: Path) -> dict[str, object]:
    s = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in s.items() if k not in ("seconds", "train_seconds", "peak_rss_mib", "updated")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run never interrupted."""
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(_cli("run", *ARGS, "--out", str(out)), check=True, capture_output=True, env=ENV)
    return out


def _start_and_signal(out: Path, sig: int, after_episodes: int) -> subprocess.Popen[bytes]:
    """Start the run in a subprocess; send ``sig`` once it has finished ``after_episodes`` episodes."""
    # the child starts with SIGINT at its default even where pytest itself runs with it ignored
    # (a background job of a shell without job control): Python then turns it into KeyboardInterrupt
    proc = subprocess.Popen(_cli("run", *ARGS, "--out", str(out)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=ENV, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads((out / "summary.json").read_text()).get("episodes_done", 0) >= after_episodes:
                break
        except (OSError, json.JSONDecodeError):
            pass
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be signalled"
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    return proc


def _assert_same_run(out: Path, reference: Path) -> None:
    a, b = json.loads((reference / "metrics.json").read_text()), json.loads((out / "metrics.json").read_text())
    assert [r["episode"] for r in b] == [float(e) for e in range(7)]
    assert _numbers(b) == _numbers(a)
    assert _summary_numbers(out) == _summary_numbers(reference)
    for name in ("best.pt", "final.pt"):
        sa, sb = torch.load(reference / name, weights_only=True), torch.load(out / name, weights_only=True)
        assert all(torch.equal(sa["actor"][k], sb["actor"][k]) for k in sa["actor"])


def _assert_only_complete_files(out: Path) -> None:
    """Every file of the folder (temporary ``.NAME.*.tmp`` ones aside) reads back whole."""
    assert unreadable_files(out) == []
    assert (out / "config.yaml").is_file() and (out / "checkpoint.pt").is_file()


PAUSE_PLUGIN = """
import os, time
from pathlib import Path

PHASE, MARKER = os.environ.get("GUIDEDMARL_TEST_PAUSE_AT"), os.environ.get("GUIDEDMARL_TEST_MARKER")


def pause():
    Path(MARKER).write_text(PHASE)
    time.sleep(300)  # the test kills the process here


if PHASE in ("rollout", "update"):
    from guidedmarl.training.trainer import Trainer

    name = "collect" if PHASE == "rollout" else "update"
    original = getattr(Trainer, name)

    def paused(self, *args, **kwargs):
        if self.episode == 1:  # inside the second training episode
            pause()
        return original(self, *args, **kwargs)

    setattr(Trainer, name, paused)
elif PHASE == "evaluation":
    from guidedmarl.run_loop import RunLoop

    original = RunLoop.evaluate

    def paused(self, row):
        if self.state.episode == 1:  # the evaluation after the second training episode
            pause()
        return original(self, row)

    RunLoop.evaluate = paused
elif PHASE == "checkpoint":
    from guidedmarl import atomic, checkpoint

    original, writing = checkpoint.save_resume, {"now": False}

    def save(path, trainer, rng, loop, config):
        writing["now"] = loop["episode"] == 2
        return original(path, trainer, rng, loop, config)

    real_fsync = atomic.os.fsync

    def fsync(fd):  # the temporary file is written, not yet renamed over checkpoint.pt
        if writing["now"]:
            pause()
        return real_fsync(fd)

    checkpoint.save_resume, atomic.os.fsync = save, fsync
"""


# the checkpoint write is the phase whose interruption matters most (files half written); the
# other three phases take about a minute together and run with `pytest -m slow`
@pytest.mark.parametrize("phase", [pytest.param(p, marks=pytest.mark.slow) for p in ("rollout", "update", "evaluation")]
                         + ["checkpoint"])  # fmt: skip
def test_sigkill_during_each_phase_leaves_complete_files_and_resumes(
    tmp_path: Path, reference: Path, phase: str
) -> None:
    """A real SIGKILL while the second episode rolls out, updates, evaluates or writes its checkpoint."""
    plugin, marker, out = tmp_path / "pause_plugin.py", tmp_path / "paused", tmp_path / "run"
    plugin.write_text(PAUSE_PLUGIN)
    env = {**ENV, "GUIDEDMARL_TEST_PAUSE_AT": phase, "GUIDEDMARL_TEST_MARKER": str(marker)}
    proc = subprocess.Popen(_cli("run", *ARGS, "--plugin", str(plugin), "--out", str(out)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)  # fmt: skip
    deadline = time.monotonic() + 180
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), f"the run never reached the {phase} pause: {proc.stderr.read().decode() if proc.stderr else ''}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    _assert_only_complete_files(out)
    assert load_run(out).status == "interrupted"
    # episode 2 counts as complete only once its checkpoint is renamed into place (after its
    # evaluation): whatever phase the kill hit, the folder resumes from episode 1
    assert torch.load(out / "checkpoint.pt", weights_only=True)["loop"]["episode"] == 1
    if phase == "checkpoint":
        assert list(out.glob(".checkpoint.pt.*.tmp")), "the kill should have caught the temporary file"
    resumed = subprocess.run(_cli("resume", str(out), "--quiet"), capture_output=True, text=True, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(out, reference)


def test_sigkill_then_resume_ends_with_the_uninterrupted_numbers(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "run"
    proc = _start_and_signal(out, signal.SIGKILL, after_episodes=2)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((out / "summary.json").read_text())["status"] == "running"  # what the dead process left
    assert load_run(out).status == "interrupted"  # ... read as: its process is gone
    assert not (out / "final.pt").exists()
    _assert_only_complete_files(out)  # a stray .NAME.*.tmp may remain; readers ignore it
    result = subprocess.run(_cli("resume", str(out), "--quiet"), capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    assert "resuming after episode" in result.stdout
    _assert_same_run(out, reference)
    assert load_run(out).status == "finished"
    sessions = json.loads((out / "provenance.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[1]["resumed_from_episode"] >= 2


def test_sigint_stops_cleanly_and_resumes(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "run"
    proc = _start_and_signal(out, signal.SIGINT, after_episodes=3)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 130, stderr
    assert "the folder is resumable: guidedmarl resume" in stderr and "Traceback" not in stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    refused = runner.invoke(app, ["run", *ARGS, "--out", str(out)])
    assert refused.exit_code == 2 and "unfinished run (status interrupted)" in refused.output
    result = runner.invoke(app, ["resume", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    _assert_same_run(out, reference)


def test_sigterm_is_a_clean_stop_too(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "run"
    proc = _start_and_signal(out, signal.SIGTERM, after_episodes=1)
    assert proc.returncode == 130
    assert load_run(out).status == "interrupted"
    _assert_only_complete_files(out)
    result = runner.invoke(app, ["resume", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    _assert_same_run(out, reference)


def test_a_finished_run_is_not_overwritten_without_force(tmp_path: Path, reference: Path) -> None:
    before = (reference / "metrics.json").read_text()
    again = runner.invoke(app, ["run", "--config", str(reference / "config.yaml"), "--quiet"])
    assert again.exit_code == 2 and "holds a finished run; pass --force" in again.output
    assert (reference / "metrics.json").read_text() == before
    done = runner.invoke(app, ["resume", str(reference), "--quiet"])
    assert done.exit_code == 0 and "nothing to resume" in done.output
    out = tmp_path / "copy"
    first = runner.invoke(app, ["run", "--config", str(reference / "config.yaml"), "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    assert _numbers(json.loads((out / "metrics.json").read_text())) == _numbers(json.loads(before))
    forced = runner.invoke(app, ["run", "--config", str(reference / "config.yaml"), "--out", str(out), "--force",
                                 "--episodes", "1", "--quiet"])  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert len(json.loads((out / "metrics.json").read_text())) == 2


def _small(tmp_path: Path, domain: str = "cloud", **extra: object) -> RunConfig:
    settings = {"horizon": 6, "warmup": 2} if domain == "cloud" else {"horizon": 4}
    return RunConfig(domain=domain, agents=6, episodes=4, threads=1, out=tmp_path / domain, domain_config=settings,
                     eval={"test_scenarios": 2, "validation_scenarios": 2}, **extra)  # fmt: skip


@pytest.mark.parametrize("domain", ["cloud", "power"])
def test_python_resume_after_an_interrupt_matches(tmp_path: Path, domain: str) -> None:
    """In process, for each shipped domain and with several environments: stop after episode 2, resume."""
    ref = run_experiment(_small(tmp_path / "ref", domain, envs=2))
    cfg = _small(tmp_path, domain, envs=2)

    def stop(episode: int, row: dict[str, float]) -> None:
        if episode == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, on_episode=stop)
    assert load_run(cfg.out).status == "interrupted"
    with pytest.raises(ConfigError, match="unfinished run"):
        run_experiment(cfg)
    res = run_experiment(cfg, resume=True)
    assert _numbers(res.metrics) == _numbers(ref.metrics)
    assert res.final_test_reward == ref.final_test_reward and res.best_test_reward == ref.best_test_reward


def test_noisy_surrogate_generator_is_resumed(tmp_path: Path) -> None:
    """An estimator's own generator (a noisy reference draws at every step) is saved and restored."""
    learner = {"estimator": {"surrogate": {"kind": "noisy", "sigma": 0.5}}}
    ref = run_experiment(_small(tmp_path / "ref", learner=learner))
    cfg = _small(tmp_path, learner=learner)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, on_episode=lambda e, r: (_ for _ in ()).throw(KeyboardInterrupt) if e == 1 else None)
    assert _numbers(run_experiment(cfg, resume=True).metrics) == _numbers(ref.metrics)


def test_bad_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    cfg = _small(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, on_episode=lambda e, r: (_ for _ in ()).throw(KeyboardInterrupt))
    path = cfg.out / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = runner.invoke(app, ["resume", str(cfg.out), "--quiet"])
    assert result.exit_code == 1 and "cannot be read: it is truncated, corrupt" in result.output
    torch.save({"actor": {}}, path)
    with pytest.raises(CheckpointError, match="weights checkpoint"):
        run_experiment(cfg, resume=True)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="holds a list"):
        run_experiment(cfg, resume=True)
    other = yaml.safe_load((cfg.out / "config.yaml").read_text())
    assert other["seed"] == 0


def test_status_is_failed_when_training_raises(tmp_path: Path) -> None:
    cfg = _small(tmp_path)

    def boom(episode: int, row: dict[str, float]) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        run_experiment(cfg, on_episode=boom)
    summary = json.loads((cfg.out / "summary.json").read_text())
    assert summary["status"] == "failed" and "disk on fire" in summary["error"] and summary["episodes_done"] == 1


def test_out_that_is_a_file_is_refused_before_work(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    for out in (file, file / "below"):
        result = runner.invoke(app, ["run", "--domain", "cloud", "--out", str(out), "--quiet"])
        assert result.exit_code == 2 and "is a file" in result.output


def test_out_that_is_not_writable_is_refused_before_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The permission check itself (this test cannot rely on chmod: the test machines run as root)."""
    import guidedmarl.rundir as rundir

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(rundir.os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    result = runner.invoke(app, ["run", "--domain", "cloud", "--out", str(locked / "run"), "--quiet"])
    assert result.exit_code == 2 and f"{locked} is not writable; choose another --out" in result.output
    assert not (locked / "run").exists()


def test_a_checkpoint_written_before_newer_settings_still_resumes(tmp_path: Path) -> None:
    """A folder from an older version lacks settings added since (their defaults change nothing)."""
    ref = run_experiment(_small(tmp_path / "ref"))
    cfg = _small(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, on_episode=lambda e, r: (_ for _ in ()).throw(KeyboardInterrupt) if e == 1 else None)
    path = cfg.out / "checkpoint.pt"
    data = torch.load(path, weights_only=True)
    for key in ("device", "memory_check", "env_steps"):  # settings that older versions did not write
        data["config"].pop(key)
    torch.save(data, path)
    assert _numbers(run_experiment(cfg, resume=True).metrics) == _numbers(ref.metrics)
    data = torch.load(path, weights_only=True)
    data["config"]["seed"] = 99  # a real difference is still refused
    torch.save(data, path)
    (cfg.out / "summary.json").write_text(json.dumps({"status": "interrupted", "episodes_done": 2}))
    with pytest.raises(CheckpointError, match="differs in seed"):
        run_experiment(cfg, resume=True)
