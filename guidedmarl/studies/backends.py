"""Where a study's cells run: one after another, in local processes (``--workers K``), or on Ray (``--backend ray``).

Every runner implements :class:`~guidedmarl.studies.cells.Runner`: it receives picklable
jobs ``(spec, folder)`` and a module-level cell function, and yields ``(index, result,
seconds)`` as cells finish, in any order; a cell that raised yields a :class:`CellFailure`
as its result instead, so the others go on and keep their results.

* :class:`ProcessRunner`: ``K`` local worker processes (``concurrent.futures``), forked on
  Linux so that domains and plug-ins registered in this process exist in the workers.
* :class:`RayRunner`: tasks on a Ray instance: a local one started for the study (``K``
  CPUs) and stopped after it, or an existing cluster (``--address ray://HOST:10001`` or
  ``auto``), where every node needs guidedmarl installed and the study's ``--out`` on a
  shared filesystem (each cell writes its run folder itself; the results come back to
  this process, which writes ``cell.json``). Ray is an optional extra: ``pip install -e '.[ray]'``.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from guidedmarl.errors import ConfigError

BackendKind = Literal["local", "ray"]


@dataclass(frozen=True)
class CellFailure:
    """What a cell that raised leaves: the error on one line and its traceback."""

    error: str
    traceback: str


@dataclass(frozen=True)
class Backend:
    """How cells run: ``kind`` local or ray, ``workers`` at once, Ray ``address`` (None: a local instance)."""

    kind: BackendKind = "local"
    workers: int = 1
    address: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers: must be >= 1, got {self.workers}")
        if self.address is not None and self.kind != "ray":
            raise ConfigError("address: only with --backend ray")


def timed_call(fn: Any, spec: Any, folder: Path) -> tuple[Any, float]:
    """``(fn(spec, folder), seconds)``, or ``(CellFailure, seconds)`` if it raised (run inside a worker)."""
    t0 = time.perf_counter()
    try:
        result = fn(spec, Path(folder))
    except ConfigError:
        raise  # wrong settings: every cell would fail alike, so the study stops (exit 2)
    except Exception as exc:  # noqa: BLE001 - the cell's own failure is reported, the study goes on
        result = CellFailure(f"{type(exc).__name__}: {exc}", traceback.format_exc())
    return result, time.perf_counter() - t0


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork") if "fork" in methods else None


class ProcessRunner:
    """Cells in ``workers`` local processes; at most ``workers`` run at once."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, fn: Any, jobs: Sequence[tuple[Any, Path]], on_start: Any = None) -> Iterator[tuple[int, Any, float]]:
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=_context())
        try:
            futures: dict[Future[tuple[Any, float]], int] = {}
            queue = list(enumerate(jobs))
            while queue or futures:
                while queue and len(futures) < self.workers:  # submit lazily: on_start means "starts now"
                    index, (spec, folder) = queue.pop(0)
                    if on_start is not None:
                        on_start(spec)
                    futures[pool.submit(timed_call, fn, spec, folder)] = index
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    index = futures.pop(future)
                    try:
                        result, seconds = future.result()
                    except ConfigError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory)
                        result, seconds = CellFailure(f"worker process failed: {type(exc).__name__}: {exc}", ""), 0.0
                    yield index, result, seconds
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class RayRunner:
    """Cells as Ray tasks (one CPU each) on a local instance or the cluster at ``address``."""

    def __init__(self, workers: int, address: str | None) -> None:
        self.workers, self.address = workers, address

    def run(self, fn: Any, jobs: Sequence[tuple[Any, Path]], on_start: Any = None) -> Iterator[tuple[int, Any, float]]:
        try:
            import ray
        except ImportError:
            raise ConfigError("backend: 'ray' needs Ray: pip install -c constraints.txt -e '.[ray]'") from None
        started = not ray.is_initialized()
        if started:
            local = {"num_cpus": self.workers, "object_store_memory": 200 * 1024**2} if self.address is None else {}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **local)
        try:
            task = ray.remote(num_cpus=1, max_retries=0)(timed_call)
            limit = self.workers if (self.address is None or self.workers > 1) else len(jobs)
            queue, running = list(enumerate(jobs)), {}
            while queue or running:
                while queue and len(running) < limit:
                    index, (spec, folder) = queue.pop(0)
                    if on_start is not None:
                        on_start(spec)
                    running[task.remote(fn, spec, str(folder))] = index
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    index = running.pop(ref)
                    try:
                        result, seconds = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        if isinstance(getattr(exc, "cause", None), ConfigError):
                            raise exc.cause from None  # type: ignore[misc]
                        result, seconds = CellFailure(f"Ray task failed: {type(exc).__name__}: {exc}", ""), 0.0
                    yield index, result, seconds
        finally:
            if started:
                ray.shutdown()


def runner_for(backend: Backend | int) -> Any:
    """The runner of ``backend`` (an int means that many local workers)."""
    from guidedmarl.studies.cells import SequentialRunner

    if isinstance(backend, int):
        backend = Backend(workers=backend)
    if backend.kind == "ray":
        return RayRunner(backend.workers, backend.address)
    return SequentialRunner() if backend.workers == 1 else ProcessRunner(backend.workers)
