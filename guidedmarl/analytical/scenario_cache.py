"""Exogenous references solved once per scenario and kept by seed (least recently used dropped).

A domain whose reference x_ref depends only on the scenario (its demand, the network) can
solve it once per scenario, in one batched call for all the seeds of a reset that are not
cached yet, instead of at every step. Subclasses say how to solve a batch of seeds.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Generic, TypeVar

Solved = TypeVar("Solved")


class SolvedScenarioCache(ABC, Generic[Solved]):
    """Solved scenarios by seed; :meth:`get` solves the missing ones together.

    Args:
        capacity: scenarios kept (the most recently used); a request for more seeds than
            that keeps all of them until the next request.

    Attributes:
        solves: number of scenarios solved (cache misses).
        solve_seconds: wall-clock seconds spent in :meth:`solve`.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the scenario cache must hold at least 1 scenario, got {capacity}")
        self.capacity = capacity
        self._cache: OrderedDict[int, Solved] = OrderedDict()
        self.solves = 0
        self.solve_seconds = 0.0

    @abstractmethod
    def solve(self, seeds: list[int]) -> list[Solved]:
        """The solved scenarios of ``seeds`` (distinct, not cached), in the same order."""

    def get(self, seeds: list[int]) -> list[Solved]:
        """The solved scenarios of ``seeds`` (repeats allowed), solving the missing ones in one call."""
        missing = list(dict.fromkeys(s for s in seeds if s not in self._cache))
        if missing:
            start = time.perf_counter()
            solved = self.solve(missing)
            if len(solved) != len(missing):
                raise RuntimeError(f"{type(self).__name__}.solve returned {len(solved)} scenarios for {len(missing)} seeds")
            self._cache.update(zip(missing, solved))
            self.solves += len(missing)
            self.solve_seconds += time.perf_counter() - start
        out = []
        for s in seeds:
            self._cache.move_to_end(s)
            out.append(self._cache[s])
        while len(self._cache) > max(self.capacity, len(seeds)):
            self._cache.popitem(last=False)
        return out
