"""Training seeds drawn from a fixed pool (domains whose references are cached per scenario)."""

from __future__ import annotations

import pytest

from guidedmarl.domain import TEST_SEED_BASE, pooled_train_seeds


def test_pooled_seeds_cycle_through_the_pool_and_stay_below_the_test_seeds() -> None:
    pool = 16
    seen = set()
    for episode in range(8):
        seeds = pooled_train_seeds(episode, 4, run_seed=0, pool=pool)
        assert len(seeds) == 4 and all(0 <= s < pool < TEST_SEED_BASE for s in seeds)
        seen.update(seeds)
    assert seen == set(range(pool))  # 8 episodes x 4 environments cover the pool twice


def test_run_seeds_start_at_different_places_and_a_pool_of_one_repeats() -> None:
    assert pooled_train_seeds(0, 3, 0, 16) != pooled_train_seeds(0, 3, 1, 16)
    assert pooled_train_seeds(5, 3, 2, 1) == [0, 0, 0]
    with pytest.raises(ValueError, match="at least 1 scenario"):
        pooled_train_seeds(0, 1, 0, 0)
