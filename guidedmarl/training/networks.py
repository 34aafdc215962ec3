"""Actor and critic networks, batched over ``[E, N]``.

* Parameter sharing (default): one MLP applied to every agent's observation; agents differ
  through the agent-specific features of their observations.
* Per-agent parameters (``shared=False``): each layer holds a stacked weight ``[N, in, out]``
  applied with one batched matmul, so heterogeneous agents cost no Python loop over agents.
* Option scorer (discrete actions whose observation holds one feature block per option,
  :attr:`guidedmarl.env.EnvSpec.option_features`): one MLP scores every option from its own
  block and the agent's shared features, so the policy is permutation-equivariant over the
  options (renaming a server renames its logit) and learns one rule for all K options instead
  of K position-specific ones.

Initialisation follows common PPO practice: orthogonal weights, gain sqrt(2) on hidden
layers, 0.01 on the policy head (near-uniform initial policy), 1.0 on the value head.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Normal

from guidedmarl.env import EnvSpec
from guidedmarl.errors import ConfigError, TrainingError
from guidedmarl.finite import all_finite, count_nonfinite


def _batched_orthogonal(n: int, fan_in: int, fan_out: int, gain: float, generator: torch.Generator | None) -> Tensor:
    """``[n, fan_in, fan_out]`` weights whose ``[fan_in, fan_out]`` slices are orthogonal."""
    rows, cols = max(fan_in, fan_out), min(fan_in, fan_out)
    q, r = torch.linalg.qr(torch.randn(n, rows, cols, generator=generator))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    w = q if fan_in >= fan_out else q.transpose(-1, -2)
    return gain * w


class AgentLinear(nn.Module):
    """A linear layer, shared by all agents or with one weight matrix per agent.

    Input ``[..., N, in]``, output ``[..., N, out]``.
    """

    def __init__(self, num_agents: int, fan_in: int, fan_out: int, shared: bool, gain: float) -> None:
        super().__init__()
        self.shared = shared
        n = 1 if shared else num_agents
        self.weight = nn.Parameter(_batched_orthogonal(n, fan_in, fan_out, gain, None))
        self.bias = nn.Parameter(torch.zeros(n, fan_out))

    def forward(self, x: Tensor) -> Tensor:
        return _affine(x, self.weight, self.bias, self.shared)


def _affine(x: Tensor, weight: Tensor, bias: Tensor, shared: bool) -> Tensor:
    """``x W + b`` with ``weight`` ``[n, in, out]`` and ``bias`` ``[n, out]`` (n = 1 if shared)."""
    if shared:
        return nn.functional.linear(x, weight[0].T, bias[0])
    # x: [..., N, in] with per-agent weights [N, in, out]
    return torch.einsum("...ni,nio->...no", x, weight) + bias


class _Tanh(torch.autograd.Function):
    """tanh computed as 2 sigmoid(2x) - 1; backward by torch's own ``tanh_backward``.

    Why: on the CPU build used here (torch 2.13, AVX-512, one thread) ``torch.tanh`` of the
    option scorer's hidden layer is compute-bound (about 3 ns per float32, 1.2 ms at the
    6,720 x 64 of a rollout step at N = 1500), ``torch.sigmoid`` four to five times cheaper;
    the hidden activations are the largest tensors of a rollout and of the update
    (``benchmarks/perf_cloud.py``). The two agree to within 3e-7 (float32 rounding;
    ``tests/test_fast_kernels.py``): only float rounding differs from ``nn.Tanh``.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y = torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Module):
    """Drop-in for ``nn.Tanh`` through :class:`_Tanh` (same function, cheaper kernel)."""

    def forward(self, x: Tensor) -> Tensor:
        return _Tanh.apply(x)


class AgentMLP(nn.Module):
    """tanh MLP made of :class:`AgentLinear` layers.

    ``body`` (linear, tanh, linear, ..., linear) holds the parameters and is what
    :meth:`forward` computes with gradients (the PPO update). Without gradients (rollouts,
    evaluation) :meth:`forward` computes the same function with each tanh's affine parts folded
    into the neighbouring layers: tanh(z) = 2 sigmoid(2z) - 1, so a layer that feeds a tanh
    gets weights and bias times 2, and a layer fed by one gets ``2 W`` and ``b - 1^T W``
    (:meth:`folded_layers`). A hidden layer then costs one sigmoid pass instead of four
    elementwise passes (``benchmarks/perf_chunks.py``); the outputs equal ``body``'s up to
    float rounding (``tests/test_fast_kernels.py``).

    Why not in the update too: trained through the folded layers (commit 5845bdd), MAPPO on
    MPE simple_spread (N = 3, the slow test of ``tests/test_mpe_guidance.py``) ended at -81.3,
    -78.0 and -68.0 in seeds 0-2 against -67.0 +- 1.3 through ``body``, and cloud DG-PG at
    N = 200 was 0.8 points lower over six seeds (docs/performance.md). The parameter gradients
    agree to float32 rounding, and the first updates agree to 7 digits; we did not establish
    why the runs drift apart (a candidate: the fold's gradient of W is 2 sigma^T delta - 1^T
    delta, a difference of two large sums where tanh is near 0, whose rounding Adam scales
    up for weights with near-zero gradients). The update gains nothing from the fold anyway.
    """

    def __init__(
        self, num_agents: int, in_dim: int, hidden: list[int], out_dim: int, shared: bool, out_gain: float
    ) -> None:
        super().__init__()
        dims = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [AgentLinear(num_agents, a, b, shared, math.sqrt(2.0)), Tanh()]
        layers.append(AgentLinear(num_agents, dims[-1], out_dim, shared, out_gain))
        self.body = nn.Sequential(*layers)
        self.shared = shared
        self._folded_key: tuple[tuple[int, int], ...] | None = None
        self._folded: list[tuple[Tensor, Tensor]] = []

    def folded_layers(self) -> list[tuple[Tensor, Tensor]]:
        """Weights ``[n, in, out]`` and biases ``[n, out]`` of the sigmoid network equal to ``body``.

        Computed from the parameters (differentiable, a few small ops), so the optimiser and
        the checkpoints see only ``body``'s parameters. Without gradients (rollouts,
        evaluation) the result is kept until a parameter changes (its storage or its version
        counter, which every in-place update such as an optimiser step or ``load_state_dict``
        increments): the ten-odd small ops were 5 % of a rollout step at N = 1500.
        """
        if torch.is_grad_enabled():
            return self._fold()
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if key != self._folded_key:
            self._folded, self._folded_key = self._fold(), key
        return self._folded

    def _fold(self) -> list[tuple[Tensor, Tensor]]:
        linears = [m for m in self.body if isinstance(m, AgentLinear)]
        folded = []
        for i, layer in enumerate(linears):
            w, b = layer.weight, layer.bias
            if i > 0:  # fed by 2 sigmoid - 1
                w, b = 2.0 * w, b - w.sum(-2)
            if i < len(linears) - 1:  # feeds tanh(z) = 2 sigmoid(2 z) - 1
                w, b = 2.0 * w, 2.0 * b
            folded.append((w, b))
        return folded

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return self.body(x)
        return self.forward_from(x, self.folded_layers())

    def forward_from(self, x: Tensor, folded: list[tuple[Tensor, Tensor]], first_done: bool = False) -> Tensor:
        """The network on ``x`` through ``folded`` (:meth:`folded_layers`); with ``first_done``,
        ``x`` is already the first layer's output (the option scorer computes it in two parts)."""
        h = x
        for i, (w, b) in enumerate(folded):
            if i == 0 and first_done:
                continue
            if i > 0:
                h = torch.sigmoid(h) if torch.is_grad_enabled() else h.sigmoid_()
            h = _affine(h, w, b, self.shared)
        return h


class OptionScorer(nn.Module):
    """Logits ``[..., N, K]`` from observations laid out as K option blocks then shared features.

    Observation of one agent: ``[f_0, ..., f_{K-1}, s]`` with each ``f_j`` of length F (the
    features of option j) and ``s`` the features common to all options (the rest of the
    vector). Option j's logit is ``MLP([f_j, s])``, the same MLP for every j. With per-agent
    parameters the MLP is per agent (one stacked weight), shared across that agent's options.
    """

    def __init__(
        self,
        num_agents: int,
        obs_dim: int,
        num_options: int,
        option_features: int,
        hidden: list[int],
        shared: bool,
        out_gain: float,
    ) -> None:
        super().__init__()
        if num_options * option_features > obs_dim:
            raise ValueError(
                f"{num_options} options x {option_features} features exceed the observation's {obs_dim} numbers"
            )
        self.num_options, self.option_features = num_options, option_features
        self.shared = shared
        scorer_in = option_features + obs_dim - num_options * option_features
        self.scorer = AgentMLP(num_agents, scorer_in, hidden, 1, shared, out_gain)

    def forward(self, x: Tensor) -> Tensor:
        k, f = self.num_options, self.option_features
        blocks = x[..., : k * f].unflatten(-1, (k, f))
        if self.shared:
            # First layer W [f_j, s] + b = W_f f_j + (W_s s + b): the common part once per agent,
            # not once per option (same parameters as the concatenated input; float rounding only).
            # With gradients through the linear-tanh layers, without through the folded ones
            # (AgentMLP's docstring says why).
            folded = None if torch.is_grad_enabled() else self.scorer.folded_layers()
            first = self.scorer.body[0]
            w, b = (first.weight[0], first.bias[0]) if folded is None else (folded[0][0][0], folded[0][1][0])
            hidden = torch.matmul(blocks, w[:f]).add_(nn.functional.linear(x[..., k * f :], w[f:].T, b).unsqueeze(-2))
            if folded is None:
                return self.scorer.body[1:](hidden).squeeze(-1)
            return self.scorer.forward_from(hidden, folded, first_done=True).squeeze(-1)
        common = x[..., k * f :].unsqueeze(-2).expand(*x.shape[:-1], k, x.shape[-1] - k * f)
        per_option = torch.cat([blocks, common], dim=-1)  # [..., (N,) K, F + S]
        # per-agent weights act on the agent axis: put it just before the features
        return self.scorer(per_option.movedim(-2, -3)).squeeze(-1).movedim(-2, -1)


def _scatter(packed: Tensor, active: Tensor) -> Tensor:
    """Values of the active entries ``[S, ...]`` back into ``[*active.shape, ...]``, zeros elsewhere."""
    out = packed.new_zeros((*active.shape, *packed.shape[1:]))
    out[active] = packed
    return out


class Actor(nn.Module):
    """pi(a_i | o_i): categorical logits (discrete) or a diagonal Gaussian (continuous).

    ``option_features`` > 0 scores the options with an :class:`OptionScorer` (discrete only);
    0 uses one MLP with an output per option.
    """

    def __init__(
        self,
        num_agents: int,
        obs_dim: int,
        hidden: list[int],
        shared: bool,
        num_actions: int = 0,
        action_dim: int = 0,
        option_features: int = 0,
    ) -> None:
        super().__init__()
        self.discrete = num_actions > 0
        out = num_actions if self.discrete else action_dim
        self.shared = shared
        self.net: nn.Module
        if option_features:
            if not self.discrete:
                raise ValueError("an option-scorer actor needs discrete actions")
            self.net = OptionScorer(num_agents, obs_dim, num_actions, option_features, hidden, shared, out_gain=0.01)
        else:
            self.net = AgentMLP(num_agents, obs_dim, hidden, out, shared, out_gain=0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(action_dim))

    inference_chunk: int = 2_048
    """Without gradients, the network runs on at most this many agents' observations at a time
    (packed ``[S, obs_dim]`` input). Why: the option scorer's hidden layers hold S x K x hidden
    floats; with 2,048 agents, 8 options and 64 units a layer is 4 MiB and stays in the CPU's
    cache between the matmul and the sigmoid, where 32,768 agents (64 MiB per layer) went to
    memory on every pass: the forward over the 40 x 840 active agents of an evaluation step at
    N = 1500 took 175.8 ms in chunks of 32,768 and 91.5 ms in chunks of 2,048 (folded layers;
    ``benchmarks/perf_chunks.py``, docs/performance.md). It also bounds memory: 60 scenarios of 100,000 agents at
    once would hold 6.9 GB per hidden layer. Rows are independent, so the outputs equal one
    pass's (``tests/test_fast_kernels.py``)."""

    def _net(self, obs: Tensor) -> Tensor:
        if torch.is_grad_enabled() or obs.dim() != 2 or obs.shape[0] <= self.inference_chunk:
            return self.net(obs)
        return torch.cat([self.net(part) for part in obs.split(self.inference_chunk)])

    def distribution(self, obs: Tensor, mask: Tensor | None = None) -> Distribution:
        """Action distribution for ``[..., N, obs_dim]`` observations; ``mask`` (``[..., N, A]``
        bool, discrete only) gives the options allowed now: the others get probability 0."""
        out = _finite_policy_output(self._net(obs))
        if self.discrete:
            return Categorical(logits=out if mask is None else out.masked_fill(~mask, MASKED_LOGIT))
        return Normal(out, self.log_std.exp().expand_as(out))

    def _empty_actions(self, obs: Tensor) -> Tensor:
        if self.discrete:
            return torch.zeros(obs.shape[:-1], dtype=torch.long, device=obs.device)
        return obs.new_zeros((*obs.shape[:-1], self.log_std.numel()))

    def log_prob(self, dist: Distribution, actions: Tensor) -> Tensor:
        lp = dist.log_prob(actions)
        return lp if self.discrete else lp.sum(-1)

    def entropy(self, dist: Distribution) -> Tensor:
        ent = dist.entropy()
        return ent if self.discrete else ent.sum(-1)

    def mode(self, obs: Tensor, active: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """The most likely action (the mean if continuous), without building a distribution.

        With ``active`` (``[..., N]`` bool) and shared weights, only active agents are computed
        (see :meth:`sample`); the others get action 0. ``mask``: allowed options, as in
        :meth:`distribution`.
        """
        if active is not None and self.shared:
            return _scatter(self.mode(obs[active], mask=None if mask is None else mask[active]), active)
        if obs.numel() == 0:
            return self._empty_actions(obs)
        out = _finite_policy_output(self._net(obs))
        if self.discrete and mask is not None:
            out = out.masked_fill(~mask, MASKED_LOGIT)
        return out.argmax(-1) if self.discrete else out

    def sample(
        self, obs: Tensor, active: Tensor | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Sampled actions, their log-probabilities and (continuous actions) the policy mean.

        With ``active`` and shared weights the network runs on the active agents only (an
        environment ignores inactive agents' actions and the loss masks them): inactive
        agents get action, log-probability and mean 0. ``mask``: allowed options, as in
        :meth:`distribution`.
        """
        if active is not None and self.shared:
            actions, logp, mean = self.sample(obs[active], mask=None if mask is None else mask[active])
            return _scatter(actions, active), _scatter(logp, active), None if mean is None else _scatter(mean, active)
        if obs.numel() == 0:  # no agent acts (distributions refuse empty batches)
            empty = self._empty_actions(obs)
            return empty, obs.new_zeros(obs.shape[:-1]), None if self.discrete else empty
        dist = self.distribution(obs, mask)
        actions = dist.sample()
        return actions, self.log_prob(dist, actions), None if self.discrete else dist.mean


MASKED_LOGIT = -1e8
"""Logit of an option the action mask forbids: probability 0 in float32, and no NaN in the
entropy or the log-probabilities (as with an ``-inf`` logit)."""


def _finite_policy_output(out: Tensor) -> Tensor:
    """``out`` (logits or means) if finite, else a :class:`TrainingError` (not torch's ValueError deep in a distribution)."""
    if not all_finite(out):
        bad = count_nonfinite(out)
        raise TrainingError(f"the policy network output {bad} NaN or infinite value(s); check its weights and the observations")
    return out


class CentralCritic(nn.Module):
    """MAPPO critic V(s): one value per environment from the global state ``[E, state_dim]``."""

    def __init__(self, state_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.net = AgentMLP(1, state_dim, hidden, 1, shared=True, out_gain=1.0)

    def forward(self, state: Tensor, obs: Tensor) -> Tensor:
        return self.net(state).squeeze(-1)


class LocalCritic(nn.Module):
    """IPPO critic V_i(o_i): one value per agent from its own observation ``[E, N, obs_dim]``."""

    def __init__(self, num_agents: int, obs_dim: int, hidden: list[int], shared: bool) -> None:
        super().__init__()
        self.net = AgentMLP(num_agents, obs_dim, hidden, 1, shared, out_gain=1.0)

    def forward(self, state: Tensor, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


def actor_option_features(actor: str, spec: EnvSpec) -> int:
    """F of the option-scorer actor for ``ppo.actor`` on ``spec``, or 0 for a plain MLP.

    ``"auto"`` uses the option scorer exactly where the environment declares per-option
    features; ``"option_scorer"`` on an environment that does not is a :class:`ConfigError`.
    """
    if actor == "mlp":
        return 0
    if actor == "option_scorer" and not spec.option_features:
        raise ConfigError(
            "ppo.actor = 'option_scorer' needs an environment whose EnvSpec declares option_features "
            "(per-option blocks of its observation); this one does not: use ppo.actor = 'mlp' or 'auto'"
        )
    return spec.option_features
