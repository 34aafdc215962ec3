"""`all_finite` answers exactly what ``torch.isfinite(t).all()`` answers, for every tensor."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from guidedmarl.finite import all_finite, count_nonfinite

SPECIAL = st.sampled_from([float("nan"), float("inf"), float("-inf"), 3.0e38, -3.0e38, 0.0, 1.0])


@settings(max_examples=200, deadline=None)
@given(
    values=arrays(np.float32, st.integers(0, 64), elements=st.one_of(st.floats(width=32), SPECIAL)),
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
)
def test_all_finite_equals_the_elementwise_test(values: np.ndarray, dtype: torch.dtype) -> None:
    t = torch.from_numpy(values).to(dtype)  # large float32 values overflow to inf in float16
    assert all_finite(t) == bool(torch.isfinite(t).all())
    assert count_nonfinite(t) == int((~torch.isfinite(t)).sum())


def test_finite_values_whose_sum_overflows_are_finite() -> None:
    t = torch.full((4,), 3.0e38)
    assert not torch.isfinite(t.sum())  # the fast path alone would be wrong here
    assert all_finite(t)


def test_integer_bool_and_empty_tensors_are_finite() -> None:
    assert all_finite(torch.arange(5)) and all_finite(torch.ones(3, dtype=torch.bool))
    assert all_finite(torch.empty(0)) and count_nonfinite(torch.arange(3)) == 0
