"""`guidedmarl.studies.cells`: resume, the diff of a changed spec, atomic writes, corrupt cells, heuristics."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from guidedmarl import atomic
from guidedmarl.errors import StudyError
from guidedmarl.studies import cells
from guidedmarl.studies.cells import CellSpec, CellStore, HeuristicCache, heuristics_spec, run_cells

CALLS: list[str] = []


def square(spec: CellSpec, folder: Path) -> dict:
    """A cell function as a study writes them: module level, a pure function of the spec."""
    CALLS.append(spec.key)
    (folder / "artifact.txt").write_text("made by the cell")
    x = spec.inputs["x"]
    return {"square": x * x, "nan": float("nan")}


class Killed(Exception):
    """Stands for the process being stopped between two system calls."""


def _spec(key: str, x: float, lr: float = 1e-3, threads: int = 1) -> CellSpec:
    inputs = {"x": x, "ppo": {"learning_rate": lr, "epochs": 4}}
    return CellSpec.make("demo", key, "arm", 10, 0, inputs, {"threads": threads})


@pytest.fixture(autouse=True)
def _clear() -> None:
    CALLS.clear()


def test_spec_is_hashable_picklable_and_canonical() -> None:
    a = CellSpec.make("demo", "k", "arm", 10, 0, {"b": 1, "a": {"y": 2, "x": float("nan")}})
    b = CellSpec.make("demo", "k", "arm", 10, 0, {"a": {"x": None, "y": 2}, "b": 1})  # other key order, NaN as null
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert pickle.loads(pickle.dumps(a)) == a
    assert a.inputs == {"a": {"x": None, "y": 2}, "b": 1}
    assert _spec("k", 2.0, threads=1) != _spec("k", 2.0, threads=4)  # runtime is kept ...
    assert _spec("k", 2.0, threads=1).identity() == _spec("k", 2.0, threads=4).identity()  # ... but not compared


def test_resume_reuses_finished_cells_and_runs_only_new_ones(tmp_path: Path) -> None:
    store = CellStore(tmp_path)
    first = run_cells(store, [_spec("a", 2.0), _spec("b", 3.0)], square)
    assert CALLS == ["a", "b"] and [o.reused for o in first] == [False, False]
    assert [o.result["square"] for o in first] == [4.0, 9.0]
    assert first[0].result["nan"] is None  # results come back as stored (strict JSON), fresh or reused
    assert (tmp_path / "a" / "artifact.txt").is_file() and (tmp_path / "a" / "cell.json").is_file()
    again = run_cells(store, [_spec("a", 2.0, threads=8), _spec("b", 3.0), _spec("c", 4.0)], square)
    assert CALLS == ["a", "b", "c"]  # only the new cell ran; another thread count is not another cell
    assert [o.reused for o in again] == [True, True, False]
    assert [o.result for o in again[:2]] == [o.result for o in first]
    outcome = store.get_or_run(_spec("a", 2.0), square)
    assert outcome.reused and outcome.folder == tmp_path / "a" and CALLS == ["a", "b", "c"]


def test_a_changed_spec_is_refused_with_the_changed_field_or_run_again(tmp_path: Path) -> None:
    store = CellStore(tmp_path)
    store.get_or_run(_spec("a", 2.0, lr=1e-3), square)
    with pytest.raises(StudyError, match=r"ppo\.learning_rate: 0\.001 -> 0\.0001") as err:
        store.get_or_run(_spec("a", 2.0, lr=1e-4), square)
    assert "x:" not in str(err.value) and "use another --out, or delete" in str(err.value)
    assert CALLS == ["a"]
    said: list[str] = []
    redone = store.get_or_run(_spec("a", 5.0, lr=1e-4), square, on_change="rerun", say=said.append)
    assert not redone.reused and redone.result["square"] == 25.0 and CALLS == ["a", "a"]
    assert "x: 2.0 -> 5.0" in said[0] and "ppo.learning_rate: 0.001 -> 0.0001" in said[0]
    assert store.get_or_run(_spec("a", 5.0, lr=1e-4), square).reused  # the new spec is the stored one now


def test_differences_name_every_changed_path() -> None:
    old = {"a": 1, "b": {"c": 2, "d": [1, 2]}, "gone": 0}
    new = {"a": 1, "b": {"c": 3, "d": [1, 2, 3]}, "added": True}
    assert cells.differences(old, new) == [
        "added: missing -> True", "b.c: 2 -> 3", "b.d: [1, 2] -> [1, 2, 3]", "gone: 0 -> missing"
    ]  # fmt: skip


def test_a_cell_stored_before_a_setting_existed_equals_one_with_its_old_behaviour(tmp_path: Path) -> None:
    """``eval.test`` came after studies were stored: a stored spec without it is reused by a study
    whose runs play the test set at every evaluation (what every older run did), not by another."""
    assert cells.ADDED_SETTINGS["eval.test"] == "every"
    store = CellStore(tmp_path)
    old = CellSpec.make("demo", "a", "arm", 10, 0, {"x": 2.0, "eval": {"every": 3}})
    store.get_or_run(old, square)
    same = CellSpec.make("demo", "a", "arm", 10, 0, {"x": 2.0, "eval": {"every": 3, "test": "every"}})
    assert store.get_or_run(same, square).reused and CALLS == ["a"]
    other = CellSpec.make("demo", "a", "arm", 10, 0, {"x": 2.0, "eval": {"every": 3, "test": "chosen"}})
    with pytest.raises(StudyError, match=r"eval\.test: missing -> 'chosen'"):
        store.get_or_run(other, square)
    # only listed paths, and only where the old spec lacks them
    assert cells.differences({"test": "every"}, {"test": "chosen"}, "eval", cells.ADDED_SETTINGS) == [
        "eval.test: 'every' -> 'chosen'"
    ]
    assert cells.differences({}, {"new": 1}, added=cells.ADDED_SETTINGS) == ["new: missing -> 1"]


def test_an_interrupted_write_leaves_no_partial_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CellStore(tmp_path)
    spec = _spec("a", 2.0)

    def crash(src: str, dst: str) -> None:
        assert Path(src).read_text().startswith("{")  # the complete record was written to the temporary file
        raise Killed  # the process stops between writing and renaming

    monkeypatch.setattr(atomic.os, "replace", crash)  # every file is written through guidedmarl.atomic
    with pytest.raises(Killed):
        store.get_or_run(spec, square)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["artifact.txt"]  # no cell.json, no temp file
    monkeypatch.undo()
    assert not store.get_or_run(spec, square).reused  # the cell counts as not run: it runs again
    assert CALLS == ["a", "a"]

    with pytest.raises(TypeError):  # a result that is not JSON: nothing is written
        store.write(_spec("b", 1.0), {"value": object()})
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("{\"spec\": {", "is unreadable"), ("[1, 2]", "not a cell record"), ("{\"result\": 1}", "not a cell record")],
)
def test_a_corrupt_stored_cell_is_reported(tmp_path: Path, content: str, message: str) -> None:
    store = CellStore(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "cell.json").write_text(content)
    with pytest.raises(StudyError, match=message) as err:
        store.get_or_run(_spec("a", 2.0), square)
    assert str(tmp_path / "a" / "cell.json") in str(err.value) and CALLS == []


def test_two_cells_in_one_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="share a folder"):
        run_cells(CellStore(tmp_path), [_spec("a", 1.0), _spec("a", 2.0)], square)


def test_heuristic_cache_evaluates_once_and_again_when_settings_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict] = []
    real = cells.evaluate_heuristics_cell

    def counted(spec: CellSpec, folder: Path) -> dict:
        calls.append(spec.inputs["domain_config"])
        return real(spec, folder)

    monkeypatch.setattr(cells, "evaluate_heuristics_cell", counted)
    cache = HeuristicCache(CellStore(tmp_path))
    small = {"horizon": 3, "warmup": 1}
    first = cache.get(heuristics_spec("cloud", 4, small, 2, 0, 1))
    assert {"random", "best_fit"} <= set(first.result["rewards"]) and first.result["horizon"] == 3
    assert all(set(v) == {"mean", "std"} for v in first.result["rewards"].values())
    assert not first.reused and len(calls) == 1
    again = cache.get(heuristics_spec("cloud", 4, small, 2, 0, 1))
    assert again.reused and again.result == first.result and len(calls) == 1
    changed = cache.get(heuristics_spec("cloud", 4, {**small, "horizon": 4}, 2, 0, 1))
    assert not changed.reused and changed.result["horizon"] == 4 and len(calls) == 2  # replaced, not refused
    stored = json.loads((tmp_path / "heuristics" / "N4-s0" / "cell.json").read_text())
    assert stored["spec"]["inputs"]["domain_config"]["horizon"] == 4
