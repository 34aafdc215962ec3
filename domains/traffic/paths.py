"""Routes: the k shortest free-flow paths of every OD pair, and shortest-path trees for column generation.

Zones that are not through nodes (node index below ``<FIRST THRU NODE>``) are kept out of the inside of
every route by splitting each such zone z into a source (z itself, keeping its outgoing links) and a
sink copy (node ``num_nodes + j`` for the j-th such zone, receiving its incoming links): a route from
z's source to another zone's sink cannot pass through any zone. The k shortest loopless paths come from
networkx (``shortest_simple_paths``, Yen's algorithm); shortest-path trees under current link costs
from scipy (``csgraph.dijkstra``), as column generation needs at every iteration of the all-paths
assignment (:mod:`.assignment`).

A path is a tuple of link indices in driving order. A :class:`PathSet` holds paths for the OD pairs
of a network with their sparse path-link incidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from .network import FloatArray, IntArray, Network

Path = tuple[int, ...]


class RoutingGraph:
    """The network's links on nodes where non-through zones have a separate sink copy."""

    def __init__(self, net: Network) -> None:
        self.net = net
        blocked = np.arange(max(net.first_thru_node - 1, 0))
        blocked = blocked[blocked < net.num_zones]
        self.sink = np.arange(net.num_nodes)
        self.sink[blocked] = net.num_nodes + np.arange(blocked.shape[0])
        self.size = net.num_nodes + blocked.shape[0]
        self.tail, self.head = net.tail, self.sink[net.head]
        self._link_of = {(int(t), int(h)): k for k, (t, h) in enumerate(zip(self.tail, self.head))}

    def digraph(self, weight: FloatArray) -> nx.DiGraph:
        """A networkx DiGraph of the split network with edge attributes ``weight`` and ``link``."""
        g = nx.DiGraph()
        g.add_nodes_from(range(self.size))
        g.add_edges_from((int(t), int(h), {"weight": float(w), "link": k})
                         for k, (t, h, w) in enumerate(zip(self.tail, self.head, weight)))
        return g

    def links_of(self, nodes: list[int]) -> Path:
        """The link indices of a node sequence."""
        return tuple(self._link_of[(a, b)] for a, b in zip(nodes[:-1], nodes[1:]))

    def k_shortest(self, k: int, weight: FloatArray | None = None) -> list[list[Path]]:
        """Up to k loopless shortest paths (by ``weight``, default free-flow time) of every OD pair."""
        net = self.net
        g = self.digraph(net.free_flow_time if weight is None else weight)
        out = []
        for o, d in zip(net.origin, net.destination):
            found = islice(nx.shortest_simple_paths(g, int(o), int(self.sink[d]), weight="weight"), k)
            out.append([self.links_of(p) for p in found])
        return out

    def shortest_paths(self, cost: FloatArray) -> list[Path]:
        """The shortest path of every OD pair under link costs ``cost`` ``[L]`` (> 0)."""
        net = self.net
        graph = sp.csr_matrix((cost, (self.tail, self.head)), shape=(self.size, self.size))
        origins, slot = np.unique(net.origin, return_inverse=True)
        _, pred = dijkstra(graph, directed=True, indices=origins, return_predecessors=True)
        paths: list[list[int]] = [[] for _ in range(net.num_od)]
        node = self.sink[net.destination].copy()
        live = np.ones(net.num_od, dtype=bool)
        for _ in range(self.size):  # walk all OD pairs back one link at a time
            prev = pred[slot, node]
            live &= prev >= 0
            if not live.any():
                break
            for w in np.nonzero(live)[0]:
                paths[w].append(self._link_of[(int(prev[w]), int(node[w]))])
            node = np.where(live, prev, node)
        if any(not p for p in paths):
            w = next(i for i, p in enumerate(paths) if not p)
            raise ValueError(f"{net.name}: no route from zone {net.origin[w] + 1} to zone {net.destination[w] + 1}")
        return [tuple(reversed(p)) for p in paths]


@dataclass
class PathSet:
    """Paths of OD pairs and their incidence; grows by :meth:`add` (column generation).

    Attributes:
        num_links: L. od: OD index of every path. paths: the link tuples.
    """

    num_links: int
    num_od: int
    paths: list[Path] = field(default_factory=list)
    od: list[int] = field(default_factory=list)
    _index: dict[tuple[int, Path], int] = field(default_factory=dict)

    @classmethod
    def of(cls, num_links: int, routes: list[list[Path]]) -> PathSet:
        """A path set holding every OD pair's routes (duplicates kept once)."""
        out = cls(num_links, len(routes))
        for w, rs in enumerate(routes):
            for r in rs:
                out.add(w, r)
        return out

    def add(self, w: int, path: Path) -> int:
        """Index of ``path`` for OD pair ``w``, appended if new."""
        key = (w, path)
        if key not in self._index:
            self._index[key] = len(self.paths)
            self.paths.append(path)
            self.od.append(w)
        return self._index[key]

    def index(self, w: int, path: Path) -> int:
        return self._index[(w, path)]

    @property
    def size(self) -> int:
        return len(self.paths)

    def incidence(self) -> sp.csr_matrix:
        """Delta ``[P, L]``: 1 where path p uses link l."""
        rows = np.repeat(np.arange(self.size), [len(p) for p in self.paths])
        cols = np.fromiter((k for p in self.paths for k in p), dtype=np.int64, count=rows.shape[0])
        return sp.csr_matrix((np.ones(rows.shape[0]), (rows, cols)), shape=(self.size, self.num_links))

    def od_array(self) -> IntArray:
        return np.asarray(self.od, dtype=np.int64)
