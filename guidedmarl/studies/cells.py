"""Cells: the unit of work of every study, stored so that a study can be resumed.

A study is a list of **cells**. A cell is a pure function of its :class:`CellSpec` (what it
computes: the study, an arm or variant, N, a seed and the inputs that determine its
numbers, e.g. a resolved ``RunConfig``) to a JSON result. Because a spec is plain data
(hashable, picklable, JSON-able) and a cell function is a module-level function
``fn(spec, folder) -> result``, cells can be handed to any runner: :class:`SequentialRunner`
here, a process pool or a cluster scheduler later (:class:`Runner`).

A :class:`CellStore` keeps finished cells in a folder: cell ``spec`` lives in
``root / spec.key`` (the cell's own folder, where it may also write files such as a run
directory) as ``cell.json`` holding the spec and the result. :func:`run_cells` (and
:meth:`CellStore.get_or_run` for one cell) gives every study the same resume rules:

* a stored cell whose spec equals the requested one is **reused** (not run again);
* a cell without ``cell.json`` (never run, or interrupted: the file is written last,
  atomically, through a temporary file and a rename) is **run**;
* a stored cell whose spec differs is either an error (``on_change="error"``: a
  :class:`~guidedmarl.errors.StudyError` listing the differing fields as
  ``path: old -> new``) or run again (``on_change="rerun"``; the same list is reported);
* an unreadable ``cell.json`` is a :class:`StudyError` naming the file.

``CellSpec.runtime`` holds settings that change how a cell runs but not what it computes
(torch threads, the command line); they are not compared.

:class:`HeuristicCache` is the one cache of heuristic baselines, a cell per (domain
settings, N, test scenarios, seed) on the same store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from guidedmarl.atomic import atomic_write_json, atomic_write_text
from guidedmarl.errors import StudyError
from guidedmarl.studies.backends import CellFailure
from guidedmarl.studies.reporting import finite_or_null

CELL_FILE = "cell.json"
FORMAT = 1
OnChange = Literal["error", "rerun"]


def canonical(obj: Any) -> Any:
    """``obj`` as plain JSON data (NaN as None, paths as text): what a store writes and reads back."""
    return json.loads(json.dumps(finite_or_null(obj), allow_nan=False))


@dataclass(frozen=True)
class CellSpec:
    """What a cell computes (hashable and picklable; compare with ``==``).

    Attributes:
        study: the study (``scale``, ``stress``, ``heuristics``...).
        key: the cell's folder inside its store, e.g. ``runs/dgpg/N50-s0``.
        name: the arm, variant or learner of the cell.
        agents: N, or None.
        seed: the seed, or None.
        inputs_json: everything that determines the result, as canonical JSON text
            (use :meth:`make` and :attr:`inputs`).
        runtime_json: settings that do not change the result (threads...), not compared.
    """

    study: str
    key: str
    name: str
    agents: int | None
    seed: int | None
    inputs_json: str
    runtime_json: str = "{}"

    @classmethod
    def make(
        cls,
        study: str,
        key: str,
        name: str,
        agents: int | None,
        seed: int | None,
        inputs: dict[str, Any],
        runtime: dict[str, Any] | None = None,
    ) -> CellSpec:
        """A spec from plain ``inputs`` (made canonical: key order and NaN do not matter)."""
        dump = lambda d: json.dumps(canonical(d), sort_keys=True)  # noqa: E731
        return cls(study, key, name, agents, seed, dump(inputs), dump(runtime or {}))

    @property
    def inputs(self) -> dict[str, Any]:
        """The inputs as a (fresh) dict."""
        return json.loads(self.inputs_json)

    @property
    def runtime(self) -> dict[str, Any]:
        return json.loads(self.runtime_json)

    def identity(self) -> dict[str, Any]:
        """Everything compared on resume: the spec without ``runtime``."""
        fields = {"study": self.study, "key": self.key, "name": self.name, "agents": self.agents, "seed": self.seed}
        return {"cell": fields, "inputs": self.inputs}


ADDED_SETTINGS: dict[str, Any] = {"eval.test": "every"}
"""Inputs added after cells were first stored, with the value that does what every cell did
before the setting existed. A stored spec without such an input equals a new one that has
this value (a study started before the setting resumes); any other value is a difference.
Add a setting here only when its old behaviour is exactly this value's."""


def differences(old: Any, new: Any, prefix: str = "", added: dict[str, Any] | None = None) -> list[str]:
    """Every leaf where ``old`` and ``new`` differ, as ``path: old -> new`` (sorted by path).

    ``added`` (path -> value): a path missing from ``old`` whose new value is this one is not
    a difference (:data:`ADDED_SETTINGS`).
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old and added is not None and path in added and new[key] == added[path]:
                continue
            if key not in old or key not in new:
                was = "missing" if key not in old else repr(old[key])
                now = "missing" if key not in new else repr(new[key])
                out.append(f"{path}: {was} -> {now}")
            else:
                out += differences(old[key], new[key], path, added)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def spec_differences(old: dict[str, Any], new: CellSpec) -> list[str]:
    """The differences of a stored spec (``identity()`` form) from ``new``; input paths unprefixed."""
    diffs = differences(old.get("cell"), new.identity()["cell"], "cell")
    return diffs + differences(old.get("inputs"), new.inputs, added=ADDED_SETTINGS)


@dataclass
class CellOutcome:
    """A cell's result and where it came from."""

    spec: CellSpec
    result: Any
    reused: bool
    folder: Path
    seconds: float | None = None  # time the cell took to run here (None: reused)


CellFn = Callable[[CellSpec, Path], Any]
"""A cell function: ``fn(spec, folder) -> JSON-able result``; ``folder`` may receive files."""


class CellStore:
    """Finished cells under ``root`` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder(self, spec: CellSpec) -> Path:
        """The cell's own folder."""
        return self.root / spec.key

    def file(self, spec: CellSpec) -> Path:
        return self.folder(spec) / CELL_FILE

    def stored(self, spec: CellSpec) -> dict[str, Any] | None:
        """The stored record of ``spec``'s folder (``spec``, ``result``...), or None if there is none."""
        path = self.file(spec)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StudyError(f"stored cell {path} is unreadable ({exc}); delete it to run the cell again") from None
        if not isinstance(record, dict) or not isinstance(record.get("spec"), dict) or "result" not in record:
            raise StudyError(f"stored cell {path} is not a cell record (no 'spec' and 'result'); delete it to run "
                             "the cell again")  # fmt: skip
        return record

    def lookup(self, spec: CellSpec, on_change: OnChange = "error", say: Callable[[str], None] | None = None) -> Any:
        """The stored result of ``spec`` if it is there with this spec; None if the cell must run.

        Raises :class:`StudyError` (listing the differences) when the stored spec differs and
        ``on_change`` is ``"error"``.
        """
        record = self.stored(spec)
        if record is None:
            return None
        diffs = spec_differences(record["spec"], spec)
        if not diffs:
            return record["result"]
        shown = "; ".join(diffs[:6]) + (f"; ... ({len(diffs) - 6} more)" if len(diffs) > 6 else "")
        folder = self.folder(spec)
        if on_change == "error":
            raise StudyError(
                f"{folder} holds a finished cell with other settings than this study's ({shown}): "
                f"use another --out, or delete {folder}"
            )
        if say is not None:
            say(f"{folder}: settings changed ({shown}); running the cell again")
        return None

    def write(self, spec: CellSpec, result: Any, seconds: float | None = None) -> Any:
        """Store ``result`` atomically (temporary file, then rename); returns it as read back."""
        record = {"format": FORMAT, "spec": spec.identity(), "runtime": spec.runtime, "result": result}
        if seconds is not None:
            record["seconds"] = seconds
        text = json.dumps(canonical(record), indent=1)  # a result that is not JSON fails here, before any write
        folder = self.folder(spec)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / CELL_FILE, text)
        return json.loads(text)["result"]

    def get_or_run(
        self, spec: CellSpec, fn: CellFn, on_change: OnChange = "error", say: Callable[[str], None] | None = None
    ) -> CellOutcome:
        """The stored result of ``spec``, or ``fn(spec, folder)`` run and stored."""
        return run_cells(self, [spec], fn, on_change=on_change, say=say)[0]


OnStart = Callable[[CellSpec], None]


class Runner(Protocol):
    """Runs cell functions; yields ``(index, result, seconds)`` as each cell finishes.

    ``on_start`` is called with a cell's spec when it starts (or is submitted). A runner
    needs nothing but the jobs: specs are picklable and ``fn`` is a module-level function,
    so a process pool or a cluster scheduler can implement this protocol.
    """

    def run(
        self, fn: CellFn, jobs: Sequence[tuple[CellSpec, Path]], on_start: OnStart | None = None
    ) -> Iterator[tuple[int, Any, float]]: ...


class SequentialRunner:
    """Runs cells one after another in this process, in order; a cell that raises yields a failure."""

    def run(
        self, fn: CellFn, jobs: Sequence[tuple[CellSpec, Path]], on_start: OnStart | None = None
    ) -> Iterator[tuple[int, Any, float]]:
        from guidedmarl.studies.backends import timed_call

        for index, (spec, folder) in enumerate(jobs):
            if on_start is not None:
                on_start(spec)
            result, seconds = timed_call(fn, spec, folder)
            yield index, result, seconds


def runner_for(workers: Any) -> Runner:
    """The runner of a :class:`~guidedmarl.studies.backends.Backend` (or of that many local workers)."""
    from guidedmarl.studies.backends import runner_for as backend_runner

    return backend_runner(workers)  # type: ignore[no-any-return]


ERROR_FILE = "error.json"


def run_cells(
    store: CellStore,
    specs: Sequence[CellSpec],
    fn: CellFn,
    workers: Any = 1,
    on_change: OnChange = "error",
    say: Callable[[str], None] | None = None,
    on_outcome: Callable[[CellOutcome], None] | None = None,
    on_start: OnStart | None = None,
) -> list[CellOutcome]:
    """Reuse or run every cell of ``specs``; outcomes in the order of ``specs``.

    Stored cells are looked up first (so a changed spec fails before anything runs), the
    rest go to the runner (``workers``: a :class:`~guidedmarl.studies.backends.Backend` or a
    number of local processes); each result is stored as soon as its cell finishes (an
    interrupted study keeps every finished cell). A cell that raises is reported (its folder
    gets ``error.json``) while the others go on; at the end a :class:`StudyError` lists the
    failed cells. ``on_outcome`` is called for each cell
    (reused ones first, then as cells finish), ``on_start`` when a cell starts running.
    """
    if len({s.key for s in specs}) != len(specs):
        raise StudyError("two cells of one study share a folder: " + ", ".join(sorted({s.key for s in specs})))
    outcomes: list[CellOutcome | None] = [None] * len(specs)
    pending: list[int] = []
    for i, spec in enumerate(specs):
        stored = store.lookup(spec, on_change, say)
        if stored is None:
            pending.append(i)
            continue
        outcomes[i] = CellOutcome(spec, stored, True, store.folder(spec))
        if on_outcome is not None:
            on_outcome(outcomes[i])  # type: ignore[arg-type]
    jobs = [(specs[i], store.folder(specs[i])) for i in pending]
    for folder in (f for _, f in jobs):
        folder.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for j, result, seconds in runner_for(workers).run(fn, jobs, on_start):
        spec = specs[pending[j]]
        folder = store.folder(spec)
        if isinstance(result, CellFailure):
            atomic_write_json(folder / ERROR_FILE, {"error": result.error, "traceback": result.traceback})
            failed.append(f"{spec.key}: {result.error}")
            if say is not None:
                say(f"cell {spec.key} failed: {result.error} (details in {folder / ERROR_FILE})")
            continue
        (folder / ERROR_FILE).unlink(missing_ok=True)
        outcome = CellOutcome(spec, store.write(spec, result, seconds), False, folder, seconds)
        outcomes[pending[j]] = outcome
        if on_outcome is not None:
            on_outcome(outcome)
    if failed:
        shown = "; ".join(failed[:5]) + (f"; ... ({len(failed) - 5} more)" if len(failed) > 5 else "")
        raise StudyError(
            f"{len(failed)} of {len(specs)} cells failed ({shown}); the other cells kept their results; "
            f"each failed cell's folder holds {ERROR_FILE}; run the study again to retry the failed cells"
        )
    return [o for o in outcomes if o is not None]


# ------------------------------------------------------------------ heuristic baselines
def heuristics_spec(
    domain: str, agents: int, domain_config: dict[str, Any], test_scenarios: int, seed: int, threads: int | None
) -> CellSpec:
    """The cell of the heuristics of one domain setting at N on the test scenarios, seeded with ``seed``."""
    inputs = {
        "domain": domain,
        "agents": agents,
        "domain_config": domain_config,
        "test_scenarios": test_scenarios,
        "seed": seed,
    }
    return CellSpec.make("heuristics", f"heuristics/N{agents}-s{seed}", "heuristics", agents, seed, inputs,
                         {"threads": threads})  # fmt: skip


def evaluate_heuristics_cell(spec: CellSpec, folder: Path) -> dict[str, Any]:
    """Cell function: every heuristic of the domain on the test scenarios, ``{rewards, horizon}``.

    ``rewards`` maps each heuristic to the mean and std of its test reward over the scenarios;
    ``horizon`` is the environment's horizon.
    """
    import torch

    from guidedmarl.domain import get_domain
    from guidedmarl.evaluation import evaluate_heuristic

    from guidedmarl.runtime import keep_freed_memory

    keep_freed_memory()
    inputs, threads = spec.inputs, spec.runtime.get("threads")
    if threads is not None:
        torch.set_num_threads(int(threads))
    domain = get_domain(inputs["domain"]).from_config(inputs["agents"], inputs["domain_config"])
    env = domain.make_env(inputs["test_scenarios"])
    seeds = domain.test_seeds(inputs["test_scenarios"])
    rewards = {}
    for name, factory in domain.heuristics().items():
        res = evaluate_heuristic(factory, env, seeds, seed=inputs["seed"])
        rewards[name] = {"mean": res.mean, "std": res.std}
    return {"rewards": rewards, "horizon": int(env.spec.horizon)}


class HeuristicCache:
    """Heuristic baselines stored as cells of ``store`` (one per N, domain settings and seed)."""

    def __init__(self, store: CellStore) -> None:
        self.store = store

    def get(self, spec: CellSpec, say: Callable[[str], None] | None = None) -> CellOutcome:
        """The heuristics of ``spec`` (:func:`heuristics_spec`), evaluated if not stored.

        Heuristics are cheap to evaluate again, so a stored cell with other settings is
        replaced rather than refused.
        """
        return self.store.get_or_run(spec, evaluate_heuristics_cell, on_change="rerun", say=say)
