"""Study backends: local processes and a real local Ray instance; a failed cell is reported, the others kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guidedmarl.errors import ConfigError, StudyError
from guidedmarl.studies.backends import Backend, ProcessRunner, RayRunner, runner_for
from guidedmarl.studies.cells import ERROR_FILE, CellSpec, CellStore, SequentialRunner, run_cells


def square(spec: CellSpec, folder: Path) -> dict:
    """A cell that records which process ran it."""
    x = spec.inputs["x"]
    if x == 3 and not (folder.parent / "fixed").exists():
        raise RuntimeError(f"cell {x} broke")
    (folder / "pid.txt").write_text(str(os.getpid()))
    return {"square": x * x}


def bad_settings(spec: CellSpec, folder: Path) -> dict:
    raise ConfigError("ppo.learning_rate: Input should be greater than 0")


def _specs(n: int) -> list[CellSpec]:
    return [CellSpec.make("demo", f"c{x}", "arm", None, x, {"x": x}) for x in range(n)]


def test_runner_for_each_backend() -> None:
    assert isinstance(runner_for(1), SequentialRunner)
    assert isinstance(runner_for(Backend(workers=3)), ProcessRunner)
    assert isinstance(runner_for(Backend("ray", 2)), RayRunner)
    with pytest.raises(ConfigError, match="workers: must be >= 1"):
        Backend(workers=0)
    with pytest.raises(ConfigError, match="address: only with --backend ray"):
        Backend(address="auto")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_cell_is_reported_and_the_others_keep_their_results(tmp_path: Path, workers: int) -> None:
    store = CellStore(tmp_path)
    with pytest.raises(StudyError, match=r"1 of 5 cells failed \(c3: RuntimeError: cell 3 broke\)"):
        run_cells(store, _specs(5), square, workers=Backend(workers=workers))
    for x in (0, 1, 2, 4):
        assert json.loads((tmp_path / f"c{x}" / "cell.json").read_text())["result"] == {"square": x * x}
    error = json.loads((tmp_path / "c3" / ERROR_FILE).read_text())
    assert "cell 3 broke" in error["error"] and "Traceback" in error["traceback"]
    if workers > 1:
        pids = {(tmp_path / f"c{x}" / "pid.txt").read_text() for x in (0, 1, 2, 4)}
        assert str(os.getpid()) not in pids  # the cells ran in worker processes
    (tmp_path / "fixed").write_text("")
    outcomes = run_cells(store, _specs(5), square, workers=Backend(workers=workers))  # only c3 runs again
    assert [o.reused for o in outcomes] == [True, True, True, False, True]
    assert not (tmp_path / "c3" / ERROR_FILE).exists()


def test_a_configuration_error_stops_the_study(tmp_path: Path) -> None:
    for workers in (1, 2):
        with pytest.raises(ConfigError, match="learning_rate"):
            run_cells(CellStore(tmp_path / str(workers)), _specs(3), bad_settings, workers=Backend(workers=workers))


STUDY = ["study", "scale", "--domain", "cloud", "--agents", "4", "--algos", "dgpg,mappo", "--seeds", "0,1",
         "--episodes", "1", "--baseline-budget", "1", "--threads", "1", "--set", "domain_config.horizon=4",
         "--set", "domain_config.warmup=1", "--set", "eval.test_scenarios=2", "--set", "eval.validation_scenarios=2"]  # fmt: skip


def _study(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "guidedmarl.cli", *STUDY, "--out", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip


def test_scale_study_with_two_local_workers_matches_the_sequential_one(tmp_path: Path) -> None:
    seq, par = _study(tmp_path / "seq"), _study(tmp_path / "par", "--workers", "2")
    assert seq.returncode == 0, seq.stderr
    assert par.returncode == 0, par.stderr
    cells = lambda out: {(c["arm"], c["seed"]): c["final"] for c in json.loads((out / "scale.json").read_text())["cells"]}  # noqa: E731
    assert cells(tmp_path / "par") == cells(tmp_path / "seq")  # same numbers, whatever ran them
    assert "--workers 2" in (tmp_path / "par" / "command.txt").read_text()


@pytest.mark.slow  # starting Ray costs about 40 s; the two-process test above covers the backend's contract
def test_scale_study_on_a_real_local_ray_instance(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install -e '.[ray]'); the dev extra includes it")
    out = tmp_path / "ray"
    first = _study(out, "--backend", "ray", "--workers", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    doc = json.loads((out / "scale.json").read_text())
    assert sorted((c["arm"], c["seed"]) for c in doc["cells"]) == [("dgpg", 0), ("dgpg", 1), ("mappo", 0), ("mappo", 1)]
    for cell in doc["cells"]:
        assert json.loads((Path(cell["out"]) / "summary.json").read_text())["status"] == "finished"
    again = _study(out, "--backend", "ray", "--workers", "2")  # idempotent: every cell is reused
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 reused" in again.stdout.replace("\n", " ") and "0 cells run" in again.stdout.replace("\n", " ")
    seq = _study(tmp_path / "seq")
    cells = lambda o: {(c["arm"], c["seed"]): c["final"] for c in json.loads((o / "scale.json").read_text())["cells"]}  # noqa: E731
    assert cells(out) == cells(tmp_path / "seq")


def test_address_without_ray_is_refused(tmp_path: Path) -> None:
    result = _study(tmp_path / "x", "--address", "auto")
    assert result.returncode == 2 and "address: only with backend ray" in result.stderr
