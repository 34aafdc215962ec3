"""How well each traffic guidance potential ranks single-packet route changes near the equilibria.

``guidedmarl check`` measures alignment from random-policy states, where every potential looks good
(the network is jammed and anything that unloads it helps). Learners spend their time near the
user equilibrium, so this script measures it there: from the state a heuristic produces (UE split,
SO split, free flow, random) on test scenarios, it moves one random packet to another of its routes
and records the reward change dr and the potential drop -dphi of each potential. Printed: Spearman
rho(-dphi, dr) and the share of changes where the signs agree, per network, state and potential.

    python benchmarks/traffic_alignment.py [--networks braess,siouxfalls] [--changes 512]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from guidedmarl_domains.traffic.domain import TrafficDomain
from guidedmarl_domains.traffic.heuristics import HEURISTICS
from guidedmarl_domains.traffic.model import TrafficModel
from guidedmarl_domains.traffic.settings import TrafficSettings

AGENTS = {"braess": 6, "siouxfalls": 1000, "anaheim": 2000}
POTENTIALS = ("distance", "system_cost")
STATES = ("user_equilibrium", "system_optimum", "day_to_day", "random")


def measure(network: str, agents: int, changes: int, scenarios: int) -> list[tuple[str, str, float, float]]:
    """(state, potential, Spearman rho, sign agreement) for ``changes`` single-packet moves per state."""
    settings = TrafficSettings(network=network, horizon=3)
    domain = TrafficDomain(agents, settings)
    env = domain.make_env(scenarios)
    seeds = domain.test_seeds(scenarios)
    models = {p: TrafficModel(domain.system, p) for p in POTENTIALS}
    gen = torch.Generator().manual_seed(0)
    k, n = env.spec.num_actions, env.spec.num_agents
    rows = []
    for state in STATES:
        rule = HEURISTICS[state]()
        step = env.reset(seeds)
        rule.reset(env, 0)
        for _ in range(2):  # day 2: day_to_day has moved off free flow
            actions = rule(env, step)
            step = env.step(actions)
        context = env.model_context()
        base = rule(env, step)
        moved_r, drops = [], {p: [] for p in POTENTIALS}
        for _ in range(max(1, changes // scenarios)):
            agent = torch.randint(0, n, (scenarios,), generator=gen)
            shift = torch.randint(1, max(k, 2), (scenarios,), generator=gen)
            changed = base.clone()
            changed[torch.arange(scenarios), agent] = (base[torch.arange(scenarios), agent] + shift) % k
            r0 = -(env.flows_of(base) * env.travel_time(env.flows_of(base))).sum(-1)
            r1 = -(env.flows_of(changed) * env.travel_time(env.flows_of(changed))).sum(-1)
            moved_r.append(((r1 - r0) / domain.system.normaliser).numpy())
            for name, model in models.items():
                x_ref = model.reference(context)
                phi0 = model.potential(model.state(base, context), x_ref)
                phi1 = model.potential(model.state(changed, context), x_ref)
                drops[name].append((phi0 - phi1).numpy())
        dr = np.concatenate(moved_r)
        decisive = np.abs(dr) > 1e-12
        for name in POTENTIALS:
            dp = np.concatenate(drops[name])
            rho = float(spearmanr(dp, dr).statistic)
            agree = float(np.mean(np.sign(dp[decisive]) == np.sign(dr[decisive])))
            rows.append((state, name, rho, agree))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="braess,siouxfalls")
    parser.add_argument("--changes", type=int, default=512)
    parser.add_argument("--scenarios", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| network | N | state | potential | Spearman rho(-dphi, dr) | sign agreement |")
    print("|---|---:|---|---|---:|---:|")
    for network in args.networks.split(","):
        for state, name, rho, agree in measure(network, AGENTS[network], args.changes, args.scenarios):
            print(f"| {network} | {AGENTS[network]} | {state} | {name} | {rho:+.3f} | {agree:.1%} |")


if __name__ == "__main__":
    main()
