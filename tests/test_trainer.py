"""Trainer: GAE, DG-PG with alpha = 0 is MAPPO, reproducibility, IPPO and per-agent weights."""

from __future__ import annotations

import pytest
import torch

from guidedmarl import RunConfig
from guidedmarl.experiment import build
from guidedmarl.training import compute_gae


def test_gae_matches_hand_computation() -> None:
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [0.2], [1.0]])
    gamma, lam = 0.9, 0.8
    d2 = 2.0 - 1.0
    d1 = 0.0 + gamma * 1.0 - 0.2
    d0 = 1.0 + gamma * 0.2 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    torch.testing.assert_close(compute_gae(rewards, values, gamma, lam), torch.tensor([[a0], [a1], [a2]]))


def test_gae_broadcasts_team_reward_to_agent_values() -> None:
    rewards = torch.randn(5, 2)
    values = torch.randn(5, 2, 3)
    adv = compute_gae(rewards, values, 0.99, 0.95)
    for i in range(3):
        torch.testing.assert_close(adv[..., i], compute_gae(rewards, values[..., i], 0.99, 0.95))


def _train(bins, algo: str, episodes: int = 3, **overrides) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    cfg = RunConfig(domain="bins", algo=algo, agents=12, episodes=episodes, seed=5, envs=2, **overrides)
    domain, trainer = build(cfg)
    rows = [trainer.train_episode(domain.train_seeds(ep, cfg.envs, cfg.seed)) for ep in range(episodes)]
    return rows, trainer.actor.state_dict()


def _strip_timing(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_dgpg_with_alpha_zero_is_exactly_mappo(bins) -> None:
    mappo_rows, mappo_params = _train(bins, "mappo")
    dgpg_rows, dgpg_params = _train(bins, "dgpg", learner={"estimator": {"alpha": {"kind": "constant", "value": 0.0}}})
    for k in mappo_params:
        assert torch.equal(mappo_params[k], dgpg_params[k]), k
    only_dgpg = ("guidance/alpha", "guidance/guidance_mean", "guidance/guidance_std")
    for a, b in zip(_strip_timing(mappo_rows), _strip_timing(dgpg_rows)):
        assert {k: v for k, v in a.items() if k not in only_dgpg} == {k: v for k, v in b.items() if k not in only_dgpg}


def test_guidance_changes_the_update(bins) -> None:
    """The check above is not vacuous: alpha > 0 does move the parameters differently."""
    _, mappo_params = _train(bins, "mappo", episodes=1)
    _, dgpg_params = _train(bins, "dgpg", episodes=1)
    assert any(not torch.equal(mappo_params[k], dgpg_params[k]) for k in mappo_params)


def test_same_seed_same_numbers(bins) -> None:
    rows_a, params_a = _train(bins, "dgpg", episodes=2)
    rows_b, params_b = _train(bins, "dgpg", episodes=2)
    assert _strip_timing(rows_a) == _strip_timing(rows_b)
    assert all(torch.equal(params_a[k], params_b[k]) for k in params_a)


@pytest.mark.parametrize("algo", ["ippo", "mappo", "dgpg"])
@pytest.mark.parametrize("shared", [True, False])
def test_every_learner_trains_with_shared_and_per_agent_weights(bins, algo: str, shared: bool) -> None:
    rows, params = _train(bins, algo, episodes=2, ppo={"shared_parameters": shared})
    assert all(torch.isfinite(torch.tensor(r["train/value_loss"])) for r in rows)
    first_weight = params["net.body.0.weight"]
    assert first_weight.shape[0] == (1 if shared else 12)


def test_dgpg_learns_the_bins_toy(bins) -> None:
    """Guidance is aligned with the toy's reward: DG-PG beats its own initial policy clearly."""
    rows, _ = _train(bins, "dgpg", episodes=12)
    first = sum(r["train/episodic_return"] for r in rows[:2]) / 2
    last = sum(r["train/episodic_return"] for r in rows[-2:]) / 2
    assert last > first * 0.7  # returns are negative: a 30% smaller loss at least


def test_dgpg_with_alpha_zero_is_exactly_mappo_on_cloud() -> None:
    """Same check on the flagship domain, where the reference layer runs at every step."""
    small = {"horizon": 6, "warmup": 3}

    def train(algo: str, **kw):
        cfg = RunConfig(domain="cloud", algo=algo, agents=8, episodes=2, seed=1, domain_config=small, **kw)
        domain, trainer = build(cfg)
        rows = [trainer.train_episode(domain.train_seeds(ep, 1, cfg.seed)) for ep in range(2)]
        return _strip_timing(rows), trainer.actor.state_dict()

    rows_m, params_m = train("mappo")
    rows_d, params_d = train("dgpg", learner={"estimator": {"alpha": {"kind": "constant", "value": 0.0}}})
    assert all(torch.equal(params_m[k], params_d[k]) for k in params_m)
    assert [r["train/policy_loss"] for r in rows_m] == [r["train/policy_loss"] for r in rows_d]


def test_policy_on_active_agents_only_matches_the_dense_policy() -> None:
    """Shared weights run the actor on active agents only; the active entries are the dense
    policy's (inactive ones get 0), for greedy and sampled actions and their log-probs."""
    from guidedmarl.training.networks import Actor

    torch.manual_seed(0)
    obs = torch.randn(3, 7, 5)
    active = torch.rand(3, 7) < 0.5
    active[0] = False  # an environment where nobody acts
    for kwargs in ({"num_actions": 4}, {"action_dim": 2}):
        actor = Actor(7, 5, [16], shared=True, **kwargs)
        dense_mode = actor.mode(obs)
        packed_mode = actor.mode(obs, active)
        torch.testing.assert_close(packed_mode[active], dense_mode[active])
        assert (packed_mode[~active] == 0).all()
        actions, logp, _ = actor.sample(obs, active)
        dist = actor.distribution(obs)
        torch.testing.assert_close(logp[active], actor.log_prob(dist, actions)[active])
        assert (logp[~active] == 0).all()
    none = actor.sample(obs, torch.zeros(3, 7, dtype=torch.bool))
    assert none[0].shape == (3, 7, 2) and (none[1] == 0).all()


def test_update_on_active_samples_equals_the_masked_update() -> None:
    """The packed policy loss (active samples only) is the masked dense loss: train one
    episode with both paths from the same start and compare parameters (cloud, where a
    good share of agents has no job at a step)."""
    from guidedmarl.training import trainer as trainer_module

    config = RunConfig(domain="cloud", agents=8, episodes=1, seed=5, threads=1)
    domain, packed = build(config)
    original = trainer_module.Trainer._policy_samples

    def dense_samples(self, mb):  # the per-agent-weight path: all samples, active mask as weight
        return mb["obs"], mb["actions"], mb["logp"], mb["adv"], mb["active"].to(mb["adv"].dtype)

    seeds = domain.train_seeds(0, config.envs, config.seed)
    assert not bool(packed.collect(seeds).active.all())  # the masking is exercised
    _, packed = build(config)
    packed.train_episode(seeds)
    _, dense = build(config)  # build() reseeds the global generators: the same rollout
    trainer_module.Trainer._policy_samples = dense_samples
    try:
        dense.train_episode(seeds)
    finally:
        trainer_module.Trainer._policy_samples = original
    for (name, a), (_, b) in zip(packed.actor.named_parameters(), dense.actor.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


_SHIFT_INVARIANT_BIAS = "net.scorer.body.4.bias"
"""The option scorer's output bias (hidden [64, 64]: linear, tanh, linear, tanh, linear)."""


@pytest.mark.parametrize(("algo", "shared"), [("dgpg", True), ("ippo", True), ("mappo", False)])
def test_a_chunked_update_equals_the_whole_minibatch_update(algo: str, shared: bool, monkeypatch) -> None:
    """Splitting each minibatch into chunks of at most ``ppo.chunk_samples`` agent-samples and
    adding their gradients gives the same update as one pass: train one episode both ways from
    the same start (cloud; shared weights count active samples, per-agent weights all of them;
    IPPO's value is per agent) and compare the parameters and the metrics."""
    base = {"domain": "cloud", "algo": algo, "agents": 12, "episodes": 1, "seed": 3, "threads": 1,
            "ppo": {"shared_parameters": shared, "num_minibatches": 2}}  # fmt: skip
    domain, whole = build(RunConfig(**base))
    seeds = domain.train_seeds(0, 1, 3)
    whole_metrics = whole.train_episode(seeds)
    _, chunked = build(RunConfig(**{**base, "ppo": {**base["ppo"], "chunk_samples": 40}}))  # 100 steps x 12 agents / 2 >> 40
    chunked_calls, policy_sizes, critic_rows = [], [], []
    cls = type(chunked)
    real_chunked, real_terms, real_critic = cls._chunked_backward, cls._policy_terms, type(chunked.critic).forward

    def chunked_backward(self, mb):
        chunked_calls.append(mb["active"].shape[0])
        return real_chunked(self, mb)

    def critic_forward(self, inputs):  # the critic's passes inside a chunked minibatch
        if chunked_calls and torch.is_grad_enabled():
            critic_rows.append(inputs["state"].shape[0])
        return real_critic(self, inputs)

    monkeypatch.setattr(cls, "_chunked_backward", chunked_backward)
    monkeypatch.setattr(cls, "_policy_terms", lambda self, obs, *a: policy_sizes.append(obs.shape[0]) or real_terms(self, obs, *a))
    monkeypatch.setattr(type(chunked.critic), "forward", critic_forward)
    chunked_metrics = chunked.train_episode(seeds)
    minibatches = chunked.ppo.update_epochs * 2
    assert chunked_calls == [50] * minibatches  # every minibatch (50 rows) was split
    assert len(policy_sizes) > 3 * minibatches
    if shared:  # chunks of at most 40 active samples, however many agents a row holds
        assert max(policy_sizes) <= 40
    # the critic is chunked apart from the policy: a centralised critic takes 40 rows a pass
    # (2 passes per minibatch), a per-agent one 40 // 12 = 3 rows (17 passes)
    rows_per_pass = 40 if not chunked.critic.per_agent else 40 // 12
    assert len(critic_rows) == minibatches * -(-50 // rows_per_pass) and max(critic_rows) == rows_per_pass
    for module in ("actor", "critic"):
        for (name, a), (_, b) in zip(getattr(whole, module).named_parameters(), getattr(chunked, module).named_parameters()):
            if module == "actor" and name == _SHIFT_INVARIANT_BIAS:
                continue  # see below: compared through the policy instead
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{module}.{name}")
    # The option scorer's output bias adds one constant to every option's logit, which the
    # softmax ignores: its true gradient is 0, so Adam turns the two runs' different rounding
    # noise into steps of up to the learning rate. The policy it gives must still agree.
    obs = torch.randn(4, whole.env.spec.num_agents, whole.env.spec.obs_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p_whole, p_chunked = whole.actor.distribution(obs).probs, chunked.actor.distribution(obs).probs
    torch.testing.assert_close(p_whole, p_chunked, rtol=1e-4, atol=1e-5)
    for key in ("train/policy_loss", "train/value_loss", "train/entropy", "train/approx_kl", "train/clipfrac",
                "train/explained_variance"):  # fmt: skip
        assert chunked_metrics[key] == pytest.approx(whole_metrics[key], rel=1e-3, abs=1e-5), key
