"""Heuristics (merit order, proportional, reference) and an end-to-end run of the domain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from guidedmarl import RunConfig
from guidedmarl.evaluation import evaluate_heuristic
from guidedmarl.experiment import run_experiment as run
from guidedmarl_domains.power import PowerDomain
from guidedmarl_domains.power.env import PowerEnv
from guidedmarl_domains.power.heuristics import HEURISTICS, MeritOrder

torch.set_num_threads(1)

GENERATORS = {"case30": 6, "case118": 54}


def make(case: str, num_envs: int = 3, **settings) -> tuple[PowerDomain, PowerEnv]:
    domain = PowerDomain.from_config(GENERATORS[case], {"case": case, "horizon": 8, **settings})
    assert isinstance(domain, PowerDomain)
    return domain, domain.make_env(num_envs)


@pytest.mark.parametrize("case", ["case30", "case118"])
@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_heuristics_are_feasible_and_balanced(case: str, name: str) -> None:
    _, env = make(case, start_hour=5.0)  # the morning ramp
    policy = HEURISTICS[name]()
    policy.reset(env, 0)
    step = env.reset([0, 1, 2])
    for _ in range(env.spec.horizon):
        lo, hi = env.window()
        actions = policy(env, step)
        assert actions.shape == (3, env.spec.num_agents, 1) and torch.isfinite(actions).all()
        step = env.step(actions)
        p = env.p_prev
        assert torch.all(p >= lo - 1e-9) and torch.all(p <= hi + 1e-9)
        if name != "random":  # the floor ignores demand
            assert float(step.info["imbalance"].max()) < 1e-5  # demand is met
    if name == "reference":
        assert float(step.info["cost_gap_to_reference"].abs().max()) < 1e-5


def test_merit_order_equalises_incremental_costs() -> None:
    domain, env = make("case118", num_envs=2)
    env.reset([0, 1])
    lo, hi = env.window()
    p = MeritOrder().target(env, lo, hi)
    torch.testing.assert_close(p.sum(-1), env.current_demand())
    marginal = 2 * env.c["cost_q"] * p + env.c["cost_l"]
    free = (p > lo + 1e-7) & (p < hi - 1e-7)
    for e in range(2):  # the units strictly inside their windows share one incremental cost
        m = marginal[e][free[e]]
        assert m.numel() >= 2 and float(m.max() - m.min()) < 1e-4 * float(m.abs().max())
        assert torch.all(marginal[e][p[e] >= hi[e] - 1e-7] <= m.max() + 1e-6)  # units at their top are cheaper


@pytest.mark.parametrize("case,settings", [("case30", {"rating_scale": 0.6}), ("case118", {})])
def test_reference_is_the_best_heuristic(case: str, settings: dict) -> None:
    domain, env = make(case, num_envs=4, **settings)
    seeds = domain.test_seeds(4)
    returns = {name: evaluate_heuristic(f, env, seeds, seed=0).mean for name, f in domain.heuristics().items()}
    assert returns["reference"] >= max(returns.values()) - 1e-6


def test_run_end_to_end(tmp_path: Path) -> None:
    """`guidedmarl run --domain power` in miniature: DG-PG, guidance through the power model."""
    config = RunConfig(
        domain="power",
        agents=6,
        episodes=2,
        envs=2,
        threads=1,
        out=tmp_path / "run",
        eval={"test_scenarios": 3},
        domain_config={"horizon": 4},
    )
    result = run(config)
    assert len(result.metrics) == 3 and all("eval/test_reward" in row for row in result.metrics)
    assert set(result.baselines) == {"reference", "merit_order", "proportional", "random"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["baselines"]["reference"] >= summary["baselines"]["proportional"] - 1e-9
    assert summary["baselines"]["random"] < summary["baselines"]["proportional"]
    assert (tmp_path / "run" / "learning_curve.png").exists()
