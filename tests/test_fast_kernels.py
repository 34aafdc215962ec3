"""The cheaper kernels of the networks and the process settings (guidedmarl.runtime).

What they may change is float rounding only: the sigmoid-based tanh against ``torch.tanh``,
the MLPs' folded sigmoid form against their linear-tanh layers, the option scorer's split
first layer against the concatenated input it replaces.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from guidedmarl.training.networks import AgentMLP, OptionScorer, Tanh, _Tanh


def test_tanh_matches_torch_tanh_to_float32_rounding() -> None:
    x = torch.cat([torch.linspace(-20.0, 20.0, 100_001), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0])])
    y = Tanh()(x)
    assert y.dtype == torch.float32
    assert float((y - torch.tanh(x)).abs().max()) <= 3e-7
    assert float(y.abs().max()) <= 1.0
    assert torch.isfinite(y).all()


def test_tanh_gradient_is_tanh_derivative_and_passes_gradcheck() -> None:
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_Tanh.apply, (x,))
    x32 = (torch.randn(1000) * 3).requires_grad_(True)
    Tanh()(x32).sum().backward()
    torch.testing.assert_close(x32.grad, 1.0 - torch.tanh(x32.detach()) ** 2, atol=1e-6, rtol=0)


def test_tanh_passes_infinities_and_nan_as_torch_does() -> None:
    y = Tanh()(torch.tensor([float("inf"), float("-inf"), float("nan")]))
    assert y[0] == 1.0 and y[1] == -1.0 and torch.isnan(y[2])


def _concatenated_logits(net: OptionScorer, x: torch.Tensor) -> torch.Tensor:
    """The option scorer as first written: [f_j, s] concatenated, then the linear-tanh layers."""
    k, f = net.num_options, net.option_features
    blocks = x[..., : k * f].unflatten(-1, (k, f))
    common = x[..., k * f :].unsqueeze(-2).expand(*x.shape[:-1], k, x.shape[-1] - k * f)
    return net.scorer.body(torch.cat([blocks, common], dim=-1)).squeeze(-1)


@settings(max_examples=30, deadline=None)
@given(
    depth=st.integers(0, 3), width=st.integers(1, 12), shared=st.booleans(), seed=st.integers(0, 10_000)
)
def test_folded_mlp_equals_its_linear_tanh_layers(depth: int, width: int, shared: bool, seed: int) -> None:
    torch.manual_seed(seed)
    net = AgentMLP(3, 5, [width] * depth, 2, shared, out_gain=1.0).double()
    with torch.no_grad():  # non-zero biases, so the folded bias terms are exercised
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    assert torch.equal(net(x), net.body(x))  # with gradients: the linear-tanh layers themselves
    with torch.no_grad():  # the folded, in-place inference path
        torch.testing.assert_close(net(x), net.body(x), atol=1e-12, rtol=0)
    folded = net.forward_from(x, net.folded_layers())  # the folded layers, differentiated
    torch.testing.assert_close(folded, net.body(x), atol=1e-12, rtol=0)
    grads = torch.autograd.grad(folded.square().sum(), list(net.parameters()))
    ref = torch.autograd.grad(net.body(x).square().sum(), list(net.parameters()))
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_folded_weights_are_kept_without_gradients_until_a_parameter_changes() -> None:
    torch.manual_seed(1)
    net = AgentMLP(1, 4, [6], 1, True, out_gain=1.0)
    x = torch.randn(3, 1, 4)
    with torch.no_grad():
        first = net.folded_layers()
        assert net.folded_layers() is first  # kept
        before = net(x).clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(x).sum().backward()
    opt.step()  # in place: the version counters move
    with torch.no_grad():
        assert net.folded_layers() is not first
        torch.testing.assert_close(net(x), net.body(x), atol=1e-6, rtol=0)
        assert not torch.equal(net(x), before)
        net.load_state_dict({k: torch.zeros_like(v) for k, v in net.state_dict().items()})
        assert torch.equal(net(x), torch.zeros_like(before))
    assert net.folded_layers()[0][0].requires_grad  # with gradients: recomputed, in the graph


def test_folded_mlp_passes_gradcheck_and_keeps_its_input() -> None:
    torch.manual_seed(0)
    net = AgentMLP(1, 4, [6, 6], 1, True, out_gain=1.0).double()
    x = torch.randn(5, 1, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: net.forward_from(v, net.folded_layers()), (x,))
    before = x.detach().clone()
    with torch.no_grad():
        net(x.detach())
    assert torch.equal(x.detach(), before)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 8), f=st.integers(1, 9), common=st.integers(0, 6), seed=st.integers(0, 10_000))
def test_split_first_layer_equals_the_concatenated_input(k: int, f: int, common: int, seed: int) -> None:
    torch.manual_seed(seed)
    net = OptionScorer(4, k * f + common, k, f, [16, 16], True, out_gain=1.0).double()
    x = torch.randn(3, 4, k * f + common, dtype=torch.float64)
    torch.testing.assert_close(net(x), _concatenated_logits(net, x), atol=1e-12, rtol=0)
    with torch.no_grad():  # the in-place inference path
        torch.testing.assert_close(net(x), _concatenated_logits(net, x), atol=1e-12, rtol=0)
    # and the gradients of the parameters
    grads = torch.autograd.grad(net(x).square().sum(), list(net.parameters()))
    ref = torch.autograd.grad(_concatenated_logits(net, x).square().sum(), list(net.parameters()))
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def _in_fresh_process(code: str, env: dict[str, str]) -> str:
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is a Linux setting")
def test_allocator_setting_is_applied_once_and_can_be_declined() -> None:
    code = "from guidedmarl.runtime import keep_freed_memory as k; print(k(), k())"
    assert _in_fresh_process(code, {"GUIDEDMARL_ALLOCATOR": "keep"}) == "kept kept"
    assert _in_fresh_process(code, {"GUIDEDMARL_ALLOCATOR": "system"}) == "system system"


def test_a_wrong_allocator_setting_is_named() -> None:
    code = (
        "from guidedmarl.runtime import keep_freed_memory\n"
        "try:\n    keep_freed_memory()\nexcept ValueError as e:\n    print(e)"
    )
    assert "GUIDEDMARL_ALLOCATOR must be 'keep' or 'system'" in _in_fresh_process(code, {"GUIDEDMARL_ALLOCATOR": "jemalloc"})


def test_import_sets_a_passive_openmp_wait_policy_unless_the_user_set_one() -> None:
    import os

    code = "import guidedmarl, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "PASSIVE", out.stderr
    assert _in_fresh_process(code, {"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


def test_inference_in_chunks_gives_the_one_pass_actions() -> None:
    from guidedmarl.training.networks import Actor

    torch.manual_seed(3)
    actor = Actor(50, 5 * 3 + 2, [16, 16], True, num_actions=5, option_features=3)
    obs = torch.randn(4, 50, 17)
    active = torch.rand(4, 50) < 0.7
    with torch.no_grad():
        torch.manual_seed(11)
        whole = actor.sample(obs, active)
        greedy = actor.mode(obs, active)
        actor.inference_chunk = 7  # 140-odd active agents in chunks of 7
        torch.manual_seed(11)
        chunked = actor.sample(obs, active)
        assert torch.equal(actor.mode(obs, active), greedy)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])
    # with gradients (the update) the network runs in one pass, which the trainer chunks itself
    logits = actor._net(obs[active])
    assert logits.requires_grad
