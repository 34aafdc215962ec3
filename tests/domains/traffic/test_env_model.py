"""The traffic domain's pieces: TNTP reading, routes, packets, settings, environment and heuristics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guidedmarl import ConfigError
from guidedmarl.evaluation import evaluate_heuristic
from guidedmarl_domains.traffic import TrafficDomain
from guidedmarl_domains.traffic.network import Network, load_network
from guidedmarl_domains.traffic.packets import allocate
from guidedmarl_domains.traffic.paths import RoutingGraph

torch.set_num_threads(1)


def zone_network() -> Network:
    """Zones 1, 2, 3 (not through nodes: FIRST THRU NODE 4) and node 4; 1-2-3 is short but crosses zone 2."""
    f = np.array
    return Network("toy", 4, 3, 4, f([0, 1, 0, 3]), f([1, 2, 3, 2]), f([1.0] * 4), f([1.0, 1.0, 5.0, 5.0]),
                   f([0.15] * 4), f([4.0] * 4), f([0]), f([2]), f([1.0]), None)


def test_routes_never_cross_a_zone_that_is_not_a_through_node() -> None:
    graph = RoutingGraph(zone_network())
    assert graph.k_shortest(3) == [[(2, 3)]]  # 1 -> 4 -> 3 only; 1 -> 2 -> 3 would cross zone 2
    assert graph.shortest_paths(np.ones(4)) == [(2, 3)]
    anaheim = load_network("anaheim")
    assert anaheim.first_thru_node == 39 and anaheim.num_zones == 38
    for path in RoutingGraph(anaheim).shortest_paths(anaheim.free_flow_time):
        assert (anaheim.head[list(path[:-1])] >= 38).all()  # every inner node is a through node


def test_tntp_files_read_as_published() -> None:
    sf = load_network("siouxfalls")
    assert (sf.num_nodes, sf.num_links, sf.num_od) == (24, 76, 528) and sf.demand.sum() == 360_600
    assert load_network("anaheim").num_links == 914 and load_network("anaheim").demand.sum() == pytest.approx(104_694.4)


def test_packets_cover_every_od_pair_or_the_largest() -> None:
    demand = np.array([5.0, 1.0, 3.0, 1.0])
    many = allocate(demand, 10)
    # one each, then the other 6 by largest remainder of 6 d / sum d = [3, 0.6, 1.8, 0.6]
    assert many.num == 10 and many.count.tolist() == [4, 2, 3, 1]
    assert np.bincount(many.od, weights=many.share).tolist() == pytest.approx([1.0] * 4)
    assert ((many.quantile > 0) & (many.quantile < 1)).all()
    few = allocate(demand, 2)
    assert few.controlled.tolist() == [True, False, True, False] and few.num == 2


def test_settings_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="network: Input should be 'braess', 'siouxfalls' or 'anaheim'"):
        TrafficDomain.from_config(6, {"network": "paris"})
    with pytest.raises(ConfigError, match="level_low"):
        TrafficDomain.from_config(6, {"level_low": 1.2, "level_high": 1.0})
    with pytest.raises(ConfigError, match="routes: Input should be greater than or equal to 1"):
        TrafficDomain.from_config(6, {"routes": 0})


@pytest.fixture(scope="module")
def braess() -> TrafficDomain:
    return TrafficDomain.from_config(6, {"network": "braess", "horizon": 3, "level_low": 1.0, "level_high": 1.0,
                                         "od_noise": 0.0})  # type: ignore[return-value]


def test_braess_heuristics_give_the_paradox(braess: TrafficDomain) -> None:
    """6 one-traveller packets: UE 2/2/2 (92 each), SO 3/3/0 (83 each), free flow all on the zigzag (136)."""
    env = braess.make_env(2)
    norm = braess.system.normaliser
    assert norm == pytest.approx(60.0)  # 6 travellers x 10 min on the free-flow shortest route
    got = {name: evaluate_heuristic(f, env, [0, 1], seed=0).mean for name, f in braess.heuristics().items()}
    assert got["user_equilibrium"] == pytest.approx(-3 * 552 / norm, rel=1e-6)
    assert got["system_optimum"] == pytest.approx(-3 * 498 / norm, rel=1e-6)
    assert got["free_flow"] == pytest.approx(-3 * 816 / norm, rel=1e-6)
    assert got["random"] < got["system_optimum"] and got["day_to_day"] < got["system_optimum"]


def test_reward_is_minus_tstt_and_guidance_uses_the_chosen_route() -> None:
    domain = TrafficDomain.from_config(300, {"horizon": 2, "train_scenarios": 2})  # 300 of 528 OD pairs
    env, model = domain.make_env(2), domain.make_model()
    env.reset([0, 1])
    gen = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 4, (2, 300), generator=gen)
    ctx = env.model_context()
    x = model.state(actions, ctx)
    step = env.step(actions)
    net = domain.system.net
    # independently: every packet's flow on the links of its chosen route, plus background
    v = env.background.numpy().copy()
    paths = domain.system.paths.paths
    routes = domain.system.packet_routes
    for e in range(2):
        for i in range(300):  # a plain loop, as a check of the batched one
            for link in paths[routes[i, actions[e, i]]]:
                v[e, link] += float(env.size[e, i])
    np.testing.assert_allclose(x.numpy(), v / net.capacity, rtol=1e-5)
    np.testing.assert_allclose(step.reward.numpy(), -net.total_travel_time(v) / domain.system.normaliser, rtol=1e-5)
    assert env.background.sum() > 0  # the 228 smallest OD pairs are background traffic
    z = model.influence(actions, ctx)
    g = (z.dense(net.num_links) * (x - env.reference).unsqueeze(1)).sum(-1)
    chosen_links = [list(paths[routes[i, actions[0, i]]]) for i in range(300)]
    expected = [float(env.size[0, i]) * float(((x[0] - env.reference[0]) / torch.as_tensor(net.capacity))[l].sum())
                for i, l in enumerate(chosen_links)]
    np.testing.assert_allclose(g[0].numpy(), expected, rtol=1e-6, atol=1e-12)
