"""Demand packets (the agents): the OD demand split into N shares, and their route tables.

With N >= W (W the OD pairs with positive demand) every OD pair w gets n_w >= 1 packets, n_w = 1 plus
its share of the remaining N - W in proportion to the base demand (largest remainders); its packets
split its demand equally, so packet i carries d_w(s) / n_w in scenario s. With N < W only the N OD
pairs of largest base demand are controlled (one packet each); the demand of the others is background
traffic that keeps its user-equilibrium route split (see :mod:`.reference`). Packet i also gets a
quantile u_i = (j + 1/2) / n_w, its rank j among its OD pair's packets, so that a deterministic policy
can split an OD pair over routes (packets of one OD pair see otherwise the same observation).

Routes: the k shortest free-flow paths of every OD pair (:meth:`.paths.RoutingGraph.k_shortest`); an
OD pair with fewer than k loopless paths repeats its last one (action j then means the same route as
action j - 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import FloatArray, IntArray
from .paths import Path, PathSet


@dataclass(frozen=True)
class Packets:
    """The N agents.

    Attributes:
        od: ``[N]`` OD pair of each packet. share: ``[N]`` its fraction 1 / n_w of the OD demand.
        quantile: ``[N]`` u_i in (0, 1). controlled: ``[W]`` OD pairs that have packets.
        count: ``[W]`` n_w (0 for background OD pairs).
    """

    od: IntArray
    share: FloatArray
    quantile: FloatArray
    controlled: np.ndarray
    count: IntArray

    @property
    def num(self) -> int:
        return int(self.od.shape[0])


def allocate(base_demand: FloatArray, num_packets: int) -> Packets:
    """Split the OD pairs' demand into ``num_packets`` packets (see the module docstring)."""
    w = base_demand.shape[0]
    count = np.zeros(w, dtype=np.int64)
    if num_packets < w:
        count[np.argsort(-base_demand, kind="stable")[:num_packets]] = 1
    else:
        ideal = (num_packets - w) * base_demand / base_demand.sum()
        count = 1 + np.floor(ideal).astype(np.int64)
        left = num_packets - int(count.sum())
        count[np.argsort(-(ideal - np.floor(ideal)), kind="stable")[:left]] += 1
    od = np.repeat(np.arange(w), count)
    rank = np.arange(od.shape[0]) - np.repeat(np.cumsum(count) - count, count)
    n_of = count[od].astype(np.float64)
    return Packets(od=od, share=1.0 / n_of, quantile=(rank + 0.5) / n_of, controlled=count > 0, count=count)


def route_table(routes: list[list[Path]], paths: PathSet, k: int) -> IntArray:
    """``[W, k]`` path index of every OD pair's route j (fewer than k routes: the last one repeated)."""
    table = np.empty((len(routes), k), dtype=np.int64)
    for w, rs in enumerate(routes):
        idx = [paths.index(w, r) for r in rs[:k]]
        table[w] = idx + [idx[-1]] * (k - len(idx))
    return table
