"""A PGLib case with more than 1000 generators end to end (slow: about a minute on one core; not timed here).

pglib_opf_case9241_pegase: 9241 buses, 16049 lines, 1445 dispatchable generators, linear
costs (the reference is an LP for HiGHS with lazy line limits).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from guidedmarl.evaluation import evaluate_heuristic
from guidedmarl_domains.power import PowerDomain
from guidedmarl.guidance.weights import guidance_weights

torch.set_num_threads(1)

pytestmark = pytest.mark.slow

CASE = "pglib_opf_case9241_pegase"


def test_pglib_case_with_1445_generators() -> None:
    domain = PowerDomain.from_config(1445, {"case": CASE})
    assert isinstance(domain, PowerDomain)
    assert domain.num_agents == 1445 and domain.system.num_lines == 16049
    assert domain.bank.backend == "sparse"
    env = domain.make_env(2)
    seeds = domain.test_seeds(2)
    returns = {name: evaluate_heuristic(f, env, seeds, seed=0).mean for name, f in domain.heuristics().items()}
    assert returns["reference"] > max(returns["merit_order"], returns["proportional"])  # the network binds
    assert -1.5 * 24 < returns["reference"] < -0.5 * 24  # the same scale as case30's

    model = domain.make_model()
    env.reset(seeds)
    ctx = env.model_context()
    actions = torch.randn(2, 1445, 1, generator=torch.Generator().manual_seed(0))
    g = guidance_weights(model, actions, ctx, mean_action=torch.zeros_like(actions))
    assert g.shape == (2, 1445) and torch.isfinite(g).all()
    # the overload term on the lines reachable within the period's ramps equals it on every line
    reachable = model.reachable_lines(ctx)
    assert 0 < int(reachable.sum()) < 16049
    every_line = dataclasses.replace(ctx, pre_dispatch_flows=None, ramp_reach=None)
    torch.testing.assert_close(g, guidance_weights(model, actions, every_line, mean_action=torch.zeros_like(actions)),
                               rtol=1e-5, atol=1e-6 * float(g.abs().max()))  # fmt: skip
    # closed-form influence against autograd: d(sum of some state components)/da_i for every i
    cols = torch.arange(1000, 1445 + 3000)  # outputs of the last 445 units and 3000 lines
    relaxed = actions.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.system_state(relaxed, ctx)[:, cols].sum(), relaxed)
    dim = model.system_state(actions, ctx).shape[1]  # outputs, lines and (default) the balance component
    assert dim == 1445 + 16049 + 1
    dense = model.influence(actions, ctx).dense(dim)[:, :, cols].sum(-1)
    torch.testing.assert_close(grad[..., 0], dense, rtol=1e-4, atol=1e-5)
