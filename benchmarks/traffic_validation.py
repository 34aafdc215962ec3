"""The traffic domain's validation numbers (docs/domains/traffic.md), for each shipped network.

    python benchmarks/traffic_validation.py                    # every network, k = 4 routes
    python benchmarks/traffic_validation.py --networks braess --routes 3 --tol 1e-10

For the base demand of each network:

* user equilibrium (UE), all paths allowed (gradient projection with column generation), to relative
  gap ``--tol``: its total system travel time (TSTT), the difference to the best-known TSTT of the TNTP
  flow file (when there is one), and the largest link-flow difference to the file's flows, over the
  link's capacity and (links with file flow above 1 % of capacity) over the file's flow;
* system optimum (SO), all paths allowed, next to the SO restricted to the agents' route sets (the k
  shortest free-flow paths): what the route-set choice costs; and the route-set UE;
* the route-set SO from cvxpylayers (Clarabel) where the route sets have at most ``--layer-max-paths``
  paths, with its TSTT difference and largest link-flow difference to the structured solver's.

Prints a Markdown table; times are wall-clock seconds of this machine (upper bounds on a shared one).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from guidedmarl_domains.traffic.assignment import solve
from guidedmarl_domains.traffic.costs import LinkData
from guidedmarl_domains.traffic.network import NETWORKS, load_network
from guidedmarl_domains.traffic.paths import PathSet, RoutingGraph


def timed(fn):  # noqa: ANN001, ANN201
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--routes", type=int, default=4)
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--layer-max-paths", type=int, default=2500)
    args = parser.parse_args()
    rows = []
    for name in args.networks.split(","):
        net = load_network(name)
        graph, links = RoutingGraph(net), LinkData.of(net)

        def all_paths(kind: str):  # noqa: ANN202
            start = PathSet.of(net.num_links, [[p] for p in graph.shortest_paths(net.free_flow_time)])
            return solve(links, start, net.demand[None], kind, graph=graph, tol=args.tol, max_iter=100_000)

        ue, t_ue = timed(lambda: all_paths("ue"))
        so, t_so = timed(lambda: all_paths("so"))
        routes, t_routes = timed(lambda: graph.k_shortest(args.routes))
        paths = PathSet.of(net.num_links, routes)
        so_k, t_so_k = timed(lambda: solve(links, paths, net.demand[None], "so", tol=args.tol, max_iter=100_000))
        ue_k = solve(links, paths, net.demand[None], "ue", tol=args.tol, max_iter=100_000)
        tstt = {k: float(links.total_travel_time(s.v)[0]) for k, s in
                {"ue": ue, "so": so, "so_k": so_k, "ue_k": ue_k}.items()}
        row = {"network": name, "ue": tstt["ue"], "ue_gap": float(ue.gap[0]), "ue_s": t_ue, "so": tstt["so"],
               "so_s": t_so, "so_k": tstt["so_k"], "ue_k": tstt["ue_k"], "paths": paths.size, "routes_s": t_routes,
               "so_k_s": t_so_k}
        if net.best_known_flow is not None:
            best = net.best_known_flow
            diff = np.abs(ue.v[0] - best)
            row["file"] = float(links.total_travel_time(best))
            row["cap_diff"] = float((diff / net.capacity).max())
            busy = best > 0.01 * net.capacity
            row["rel_diff"] = float((diff[busy] / best[busy]).max())
        if paths.size <= args.layer_max_paths:
            from guidedmarl_domains.traffic.layer import solve_with_layer

            h, t_layer = timed(lambda: solve_with_layer(links, paths, net.demand[None], np.zeros((1, net.num_links)),
                                                        "so"))
            v = h @ paths.incidence()
            row["layer_tstt_rel"] = float(links.total_travel_time(v)[0] / tstt["so_k"] - 1)
            row["layer_cap_diff"] = float((np.abs(v[0] - so_k.v[0]) / net.capacity).max())
            row["layer_s"] = t_layer
        rows.append(row)
    print(f"k = {args.routes} routes, relative gap {args.tol:g}")
    print("| network | UE TSTT (all paths) | best-known (file) | UE vs file | largest link-flow diff / C (/ flow) "
          "| SO TSTT, all paths | SO TSTT, route sets (P paths) | route-set UE TSTT | route sets cost | layer SO vs "
          "structured (TSTT, flow / C) | times, s (UE, SO, routes, route-set SO, layer) |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        file = f"{r['file']:,.0f}" if "file" in r else "–"
        versus = f"{r['ue'] / r['file'] - 1:+.2e}" if "file" in r else "–"
        diff = f"{r['cap_diff']:.1e} ({r['rel_diff']:.1e})" if "file" in r else "–"
        layer = (f"{r['layer_tstt_rel']:+.1e}, {r['layer_cap_diff']:.1e}" if "layer_s" in r else "not run")
        times = f"{r['ue_s']:.1f}, {r['so_s']:.1f}, {r['routes_s']:.1f}, {r['so_k_s']:.1f}, " + (
            f"{r['layer_s']:.1f}" if "layer_s" in r else "–")
        print(f"| {r['network']} | {r['ue']:,.2f} | {file} | {versus} | {diff} | {r['so']:,.2f} | "
              f"{r['so_k']:,.2f} ({r['paths']}) | {r['ue_k']:,.2f} | {r['so_k'] / r['so'] - 1:+.2%} | {layer} | {times} |")


if __name__ == "__main__":
    main()
