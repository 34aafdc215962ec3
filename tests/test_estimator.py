"""GuidedEstimator and alpha schedules."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pydantic import ValidationError

from guidedmarl.errors import ConfigError, TrainingError
from guidedmarl.guidance import (
    ConstantAlpha,
    GuidedConfig,
    GuidedEstimator,
    LinearAlpha,
    SharedReturnConfig,
    SharedReturnEstimator,
    checked_alpha,
    masked_standardize,
)
from guidedmarl.testing import AffineDiscreteModel


def test_linear_schedule_default_is_0_9_to_0_2() -> None:
    sched = LinearAlpha()
    assert sched(0.0) == pytest.approx(0.9)
    assert sched(1.0) == pytest.approx(0.2)
    assert sched(0.5) == pytest.approx(0.55)
    assert sched(2.0) == pytest.approx(0.2)  # clipped progress


def test_constant_schedule_and_range_validation() -> None:
    assert ConstantAlpha(value=0.4)(0.7) == 0.4
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        ConstantAlpha(value=1.5)
    with pytest.raises(ValidationError, match="start"):
        LinearAlpha(start=-0.1)


def test_user_callable_schedule_is_checked() -> None:
    assert checked_alpha(lambda p: 1 - p, 0.25) == 0.75
    with pytest.raises(ValueError, match="alpha must lie in"):
        checked_alpha(lambda p: 2.0, 0.0)


def test_masked_standardize_matches_torch_on_full_mask() -> None:
    x = torch.randn(50, dtype=torch.float64)
    out = masked_standardize(x, torch.ones(50, dtype=torch.bool))
    expected = (x - x.mean()) / (x.std() + 1e-8)
    torch.testing.assert_close(out, expected)


def test_masked_standardize_ignores_masked_entries() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 1000.0])
    mask = torch.tensor([True, True, True, False])
    out = masked_standardize(x, mask)
    assert out[3] == 0
    torch.testing.assert_close(out[:3], masked_standardize(x[:3], mask[:3]))


def _estimator(alpha: float, **kw) -> GuidedEstimator:
    config = GuidedConfig(alpha=ConstantAlpha(value=alpha), **kw)
    return GuidedEstimator(config, AffineDiscreteModel(num_actions=2), seed=0)


def test_alpha_zero_is_exactly_the_standardised_advantage() -> None:
    adv, g = torch.randn(8, 3, 5), torch.randn(8, 3, 5) * 100
    mask = torch.rand(8, 3, 5) > 0.3
    out = _estimator(0.0).advantage(adv, {"guidance": g}, mask, 0.3)
    assert torch.equal(out, masked_standardize(adv, mask))


def test_alpha_one_is_minus_standardised_guidance() -> None:
    adv, g = torch.randn(6, 2, 4), torch.randn(6, 2, 4) * 7 + 3
    mask = torch.ones(6, 2, 4, dtype=torch.bool)
    out = _estimator(1.0).advantage(adv, {"guidance": g}, mask, 0.0)
    torch.testing.assert_close(out, -masked_standardize(g, mask))


@given(alpha=st.floats(0.0, 1.0), scale=st.floats(1e-2, 1e3), shift=st.floats(-1e3, 1e3))
@settings(max_examples=30, deadline=None)
def test_mixing_is_invariant_to_units_of_g(alpha: float, scale: float, shift: float) -> None:
    """Standardising g makes the mix independent of the units (and offset) of x."""
    gen = torch.Generator().manual_seed(0)
    adv = torch.randn(10, 2, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(10, 2, 3, generator=gen, dtype=torch.float64)
    mask = torch.ones(10, 2, 3, dtype=torch.bool)
    est = _estimator(alpha)
    a = est.advantage(adv, {"guidance": g}, mask, 0.0)
    b = est.advantage(adv, {"guidance": g * scale + shift}, mask, 0.0)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # eps in the std


def test_scale_mode_keeps_sign_of_g() -> None:
    g = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mask = torch.ones(4, dtype=torch.bool)
    scaled = _estimator(1.0, scaling="scale").scale_guidance(g, mask)
    assert (scaled > 0).all()
    torch.testing.assert_close(scaled, g / (g.std() + 1e-8))
    raw = _estimator(1.0, scaling="none").scale_guidance(g, mask)
    assert torch.equal(raw, g)


def test_shared_return_ignores_guidance_and_reports_no_alpha() -> None:
    est = SharedReturnEstimator(SharedReturnConfig(), None, seed=0)
    adv = torch.randn(4, 1, 2)
    mask = torch.ones(4, 1, 2, dtype=torch.bool)
    records = {"guidance": torch.randn(4, 1, 2)}
    assert torch.equal(est.advantage(adv, records, mask, 0.0), masked_standardize(adv, mask))
    assert est.diagnostics(records, mask, 0.0) == {}
    assert est.on_step(None) == {}  # type: ignore[arg-type]


def test_guided_estimator_requires_guidance_of_matching_shape_and_a_model() -> None:
    est = _estimator(0.5)
    adv = torch.randn(4, 1, 2)
    mask = torch.ones(4, 1, 2, dtype=torch.bool)
    with pytest.raises(TrainingError, match="recorded none"):
        est.advantage(adv, {}, mask, 0.0)
    with pytest.raises(TrainingError, match="shape"):
        est.advantage(adv, {"guidance": torch.randn(4, 2)}, mask, 0.0)
    with pytest.raises(ValidationError, match="scaling"):
        GuidedConfig(scaling="bogus")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs an analytical model"):
        GuidedEstimator(GuidedConfig(), None, seed=0)
