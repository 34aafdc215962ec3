"""The per-seed cache of solved exogenous references (power and traffic use it)."""

from __future__ import annotations

import pytest

from guidedmarl.analytical.scenario_cache import SolvedScenarioCache


class Squares(SolvedScenarioCache[int]):
    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.calls: list[list[int]] = []

    def solve(self, seeds: list[int]) -> list[int]:
        self.calls.append(list(seeds))
        return [s * s for s in seeds]


def test_missing_seeds_are_solved_once_together_and_repeats_are_served() -> None:
    cache = Squares(capacity=4)
    assert cache.get([3, 1, 3]) == [9, 1, 9]
    assert cache.calls == [[3, 1]] and cache.solves == 2
    assert cache.get([1, 2]) == [1, 4]
    assert cache.calls[-1] == [2] and cache.solves == 3


def test_least_recently_used_seeds_are_dropped_beyond_capacity() -> None:
    cache = Squares(capacity=2)
    cache.get([1, 2])
    cache.get([1])  # 2 is now the least recently used
    cache.get([3])
    cache.get([1, 2])
    assert cache.calls == [[1, 2], [3], [2]]  # 1 stayed, 2 was dropped and solved again


def test_a_wrong_solver_and_a_bad_capacity_are_reported() -> None:
    class Short(Squares):
        def solve(self, seeds: list[int]) -> list[int]:
            return [0]

    with pytest.raises(RuntimeError, match="returned 1 scenarios for 2 seeds"):
        Short(capacity=2).get([1, 2])
    with pytest.raises(ValueError, match="at least 1 scenario"):
        Squares(capacity=0)
