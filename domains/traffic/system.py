"""`TrafficSystem`: the per-network constants every part of the domain shares (built once per domain).

Holds the network, its BPR data, the agents' route sets (k shortest free-flow paths of every OD pair,
one :class:`~.paths.PathSet` with its sparse path-link incidence), the packets and their route table,
and the reward normaliser T_ff = sum_w d_w^base tau_w, the total travel time of the base demand at
free-flow times on each OD pair's shortest route (veh min / h): r = -TSTT / T_ff is about -1 on an
empty network, whatever N or the network.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from .costs import LinkData
from .network import Network, load_network
from .packets import Packets, allocate, route_table
from .paths import PathSet, RoutingGraph
from .settings import TrafficSettings


@functools.cache
def _routes(name: str, k: int) -> tuple:  # k-shortest paths are the slow part of a build: once per network
    return tuple(tuple(r) for r in RoutingGraph(load_network(name)).k_shortest(k))


class TrafficSystem:
    """Network, routes and packets of one domain (see the module docstring)."""

    def __init__(self, settings: TrafficSettings, num_packets: int) -> None:
        self.settings = settings
        self.net: Network = load_network(settings.network)
        self.links = LinkData.of(self.net)
        self.graph = RoutingGraph(self.net)
        routes = [list(r) for r in _routes(settings.network, settings.routes)]
        self.paths = PathSet.of(self.net.num_links, routes)
        self.k = settings.routes
        self.routes = route_table(routes, self.paths, self.k)  # [W, k] path index
        self.packets: Packets = allocate(self.net.demand, num_packets)
        self.path_od = self.paths.od_array()
        incidence = self.paths.incidence()
        self.path_free_flow = np.asarray(incidence @ self.net.free_flow_time)  # [P] (min)
        self.od_free_flow = self.path_free_flow[self.routes[:, 0]]  # [W], route 0 is the shortest
        self.normaliser = float(self.net.demand @ self.od_free_flow)
        self.packet_routes = self.routes[self.packets.od]  # [N, k]
        coo = incidence.tocoo()
        self.nnz_path, self.nnz_link = torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))
        self.max_links = int(np.diff(incidence.indptr).max())
        padded = np.zeros((self.paths.size, self.max_links), dtype=np.int64)
        mask = np.zeros((self.paths.size, self.max_links), dtype=bool)
        for p, path in enumerate(self.paths.paths):  # once per build
            padded[p, : len(path)], mask[p, : len(path)] = path, True
        self.path_links, self.path_mask = torch.from_numpy(padded), torch.from_numpy(mask)

    @property
    def num_links(self) -> int:
        return self.net.num_links

    def path_flow_of(self, chosen: Tensor, size: Tensor) -> Tensor:
        """Path flows ``[E, P]`` of packets on paths ``chosen [E, N]`` (long) with sizes ``size [E, N]``."""
        out = torch.zeros(chosen.shape[0], self.paths.size, dtype=size.dtype)
        return out.scatter_add(1, chosen, size)

    def link_flow_of(self, path_flow: Tensor) -> Tensor:
        """v = Delta^T h, ``[E, P] -> [E, L]``: a gather and an index_add over the incidence's non-zeros
        (sparse, differentiable in h, and vmap-able for the generic autograd influence)."""
        out = torch.zeros(path_flow.shape[0], self.num_links, dtype=path_flow.dtype)
        return out.index_add(1, self.nnz_link, path_flow[:, self.nnz_path])

    def path_sum_of(self, link_values: Tensor) -> Tensor:
        """Delta t: link values ``[E, L]`` summed along every path, ``[E, P]``."""
        out = torch.zeros(link_values.shape[0], self.paths.size, dtype=link_values.dtype)
        return out.index_add(1, self.nnz_path, link_values[:, self.nnz_link])
