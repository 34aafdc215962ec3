"""`LinearOutputModel`: the Gram-matrix guidance equals the generic backward pass.

A random model x = A u(a) + c with a non-linear output map u_i(a_i) = b_i tanh(a_i) + o_i and
optional component weights w. For every weight kind (pathwise g, first order, exact
difference), :func:`guidance_weights` on the Gram path (M = A^T W A) must equal the generic
path (``structured=False``: autograd through x, or the dense influence for the exact
difference) to float64 rounding. The error cases name what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from guidedmarl import LinearOutputModel
from guidedmarl.errors import GuidanceError
from guidedmarl.guidance.weights import guidance_weights
from guidedmarl.testing import default_dtype

torch.set_num_threads(1)


@dataclass
class LinearContext:
    sensitivity: Tensor  # A, [D, N]
    offset: Tensor  # c, [E, D]
    scale: Tensor  # b, [N]
    bias: Tensor  # o, [N]
    reference_outputs: Tensor  # u_ref, [E, N]


class RandomLinearModel(LinearOutputModel):
    """x = A (b tanh(a) + o) + c; the Gram matrix recomputed on every call (tests only)."""

    def outputs(self, actions: Tensor, context: LinearContext) -> Tensor:
        return context.scale * torch.tanh(actions.squeeze(-1)) + context.bias

    def output_slopes(self, actions: Tensor, context: LinearContext) -> Tensor:
        return context.scale * (1.0 - torch.tanh(actions.squeeze(-1)).square())

    def reference_outputs(self, context: LinearContext) -> Tensor:
        return context.reference_outputs

    def gram(self, context: LinearContext) -> Tensor:
        a = context.sensitivity
        w = self.component_weights
        return a.T @ (a if w is None else a * w.to(a.dtype)[:, None])

    def system_state(self, actions: Tensor, context: LinearContext) -> Tensor:
        return self.outputs(actions, context) @ context.sensitivity.T + context.offset

    def reference_state(self, context: LinearContext) -> Tensor:
        return context.reference_outputs @ context.sensitivity.T + context.offset


def random_problem(seed: int, envs: int, agents: int, dim: int, weighted: bool):
    gen = torch.Generator().manual_seed(seed)
    context = LinearContext(
        sensitivity=torch.randn(dim, agents, generator=gen),
        offset=torch.randn(envs, dim, generator=gen),
        scale=0.5 + torch.rand(agents, generator=gen),
        bias=torch.randn(agents, generator=gen),
        reference_outputs=torch.randn(envs, agents, generator=gen),
    )
    model = RandomLinearModel()
    if weighted:
        model.component_weights = torch.rand(dim, generator=gen) * 3.0
    actions = torch.randn(envs, agents, 1, generator=gen)
    mean = actions + 0.3 * torch.randn(envs, agents, 1, generator=gen)
    return model, context, actions, mean


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    envs=st.integers(1, 3),
    agents=st.integers(1, 7),
    dim=st.integers(1, 9),
    weighted=st.booleans(),
    kind=st.sampled_from(["pathwise", "first_order", "exact_difference"]),
)
def test_gram_weights_equal_the_generic_path(seed, envs, agents, dim, weighted, kind):
    with default_dtype(torch.float64):
        model, context, actions, mean = random_problem(seed, envs, agents, dim, weighted)
        kwargs = {
            "pathwise": {},
            "first_order": {"mean_action": mean},
            "exact_difference": {"mean_action": mean, "exact_difference": True},
        }[kind]
        fast = guidance_weights(model, actions, context, **kwargs)
        generic = guidance_weights(model, actions, context, structured=False, **kwargs)
    assert fast.shape == generic.shape == (envs, agents)
    torch.testing.assert_close(fast, generic, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["pathwise", "first_order", "exact_difference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_come_back_in_the_default_dtype(kind, dtype):
    """M is float64 for accuracy; the weights come back in torch's default dtype, like the generic path's."""
    with default_dtype(dtype):
        model, context, actions, mean = random_problem(4, envs=2, agents=3, dim=5, weighted=False)
        kwargs = {"pathwise": {}, "first_order": {"mean_action": mean},
                  "exact_difference": {"mean_action": mean, "exact_difference": True}}[kind]
        fast = guidance_weights(model, actions, context, **kwargs)
        generic = guidance_weights(model, actions, context, structured=False, **kwargs)
    assert fast.dtype == generic.dtype == dtype


def test_the_exact_difference_is_the_potential_change_of_each_agent_alone():
    """D_i = phi(x) - phi(x with a_i moved to mu_i's linearisation): closes the loop on the formula."""
    with default_dtype(torch.float64):
        model, context, actions, mean = random_problem(3, envs=2, agents=5, dim=6, weighted=True)
        weights = guidance_weights(model, actions, context, exact_difference=True, mean_action=mean)
        x = model.state(actions, context)
        x_ref = model.reference(context)
        sigma = model.output_slopes(actions, context) * (actions - mean).squeeze(-1)
        for i in range(5):
            x_without = x - sigma[:, i : i + 1] * context.sensitivity[:, i]
            drop = model.potential(x, x_ref) - model.potential(x_without, x_ref)
            torch.testing.assert_close(weights[:, i], drop, rtol=1e-9, atol=1e-10)


def test_the_reference_outputs_are_a_fixed_point():
    with default_dtype(torch.float64):
        model, context, actions, _ = random_problem(5, envs=2, agents=4, dim=3, weighted=False)
        context.reference_outputs = model.outputs(actions, context)
        g = guidance_weights(model, actions, context)
    assert torch.count_nonzero(g.abs() > 1e-12) == 0


def test_gram_guidance_false_takes_the_generic_path():
    class NoGram(RandomLinearModel):
        gram_guidance = False

        def gram(self, context):
            raise AssertionError("the Gram path must not be taken")

    with default_dtype(torch.float64):
        _, context, actions, mean = random_problem(1, envs=1, agents=3, dim=4, weighted=False)
        reference = guidance_weights(RandomLinearModel(), actions, context, mean_action=mean)
        generic = guidance_weights(NoGram(), actions, context, mean_action=mean)
    torch.testing.assert_close(generic, reference, rtol=1e-9, atol=1e-10)


def test_a_non_quadratic_potential_is_refused_on_the_gram_path():
    class Quartic(RandomLinearModel):
        def potential_terms(self, x, x_ref):
            return (x - x_ref).pow(4)

    _, context, actions, mean = random_problem(2, envs=1, agents=3, dim=4, weighted=False)
    with pytest.raises(GuidanceError, match="quadratic potential only.*gram_guidance = False"):
        guidance_weights(Quartic(), actions, context, mean_action=mean)


def test_vector_actions_are_refused_with_their_shape():
    model, context, actions, _ = random_problem(2, envs=1, agents=3, dim=4, weighted=False)
    wide = actions.expand(1, 3, 2).contiguous()
    with pytest.raises(GuidanceError, match=r"one scalar action per agent.*\(1, 3, 2\)"):
        model.gram_weights(wide, context, exact_difference=False, mean_action=None)


def test_a_gram_matrix_of_the_wrong_shape_is_named():
    class WrongGram(RandomLinearModel):
        def gram(self, context):
            return torch.eye(2)

    _, context, actions, _ = random_problem(2, envs=1, agents=3, dim=4, weighted=False)
    with pytest.raises(GuidanceError, match=r"WrongGram.gram must return \[N, N\] = \[3, 3\], got \[2, 2\]"):
        guidance_weights(WrongGram(), actions, context)


def test_nan_outputs_are_reported_not_propagated():
    model, context, actions, mean = random_problem(2, envs=1, agents=3, dim=4, weighted=False)
    context.bias = torch.tensor([0.0, float("nan"), 0.0])
    with pytest.raises(GuidanceError, match="NaN or infinite"):
        guidance_weights(model, actions, context, mean_action=mean)
