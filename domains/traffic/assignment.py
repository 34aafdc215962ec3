"""The exact structured assignment solver: path-based gradient projection, batched over scenarios.

Solves the user equilibrium (UE) or the system optimum (SO) of :mod:`.costs` over path flows h >= 0
with sum_{p in w} h_p = d_w for every OD pair w, for S demand scenarios at once (Jayakrishnan et al.,
"A faster path-based algorithm for traffic assignment", 1994). One iteration, for every scenario and
OD pair at the same time:

1. link flows v = Delta^T h (Delta the sparse ``[P, L]`` path-link incidence), link costs c(v) and
   slopes c'(v) (UE: t, t'; SO: the marginal cost t + v t' and its slope), path costs Delta c;
2. p* = the cheapest path of w; every other path p of w gives up min(h_p, (c_p - c_p*) / s_p) to p*,
   with s_p = sum of c' over the links in p or p* but not both (the Newton step on that pair);
3. an exact line search on [0, 1] along the whole move (bisection on the directional derivative of the
   convex objective), so every iteration lowers the objective even though all OD pairs move together.

Fixed path sets (the agents' route sets) are solved as they are; with a :class:`~.paths.RoutingGraph`
the path sets grow by column generation: before each round the shortest path of every OD pair under the
current costs is added (all paths allowed, for the published UE checks and the link-based SO).
Convergence: the relative gap 1 - sum_w d_w c*_w / sum_p h_p c_p (c*_w the cheapest path cost of w,
over all paths with column generation, over the set otherwise) below ``tol``; it is 0 exactly at the
optimum (every used path of an OD pair has the least cost: Wardrop's conditions, with marginal costs
for SO).

OD pairs outside ``free`` keep the path flows they start with (background traffic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .costs import Kind, LinkData
from .network import FloatArray, IntArray
from .paths import PathSet, RoutingGraph

LINE_SEARCH_STEPS = 24


class AssignmentError(RuntimeError):
    """The assignment did not converge, or its input is unusable."""


@dataclass
class Solution:
    """Path flows ``h [S, P]`` on ``paths``, link flows ``v [S, L]``, relative gaps ``[S]``, iterations."""

    paths: PathSet
    h: FloatArray
    v: FloatArray
    gap: FloatArray
    iterations: int


class _Tables:
    """Incidence, the padded OD x path table ``[W, K]`` (pad index P) and the shared links of path pairs.

    ``pair`` ``[P, K]``: for path p and slot j of its OD pair's table, the row of ``shared`` (a sparse
    ``[pairs, L]`` matrix of the links paths p and table[od_p, j] have in common).
    """

    def __init__(self, paths: PathSet) -> None:
        self.delta: sp.csr_matrix = paths.incidence()
        self.delta_t = self.delta.T.tocsr()
        od = paths.od_array()
        self.od, p_count = od, paths.size
        counts = np.bincount(od, minlength=paths.num_od)
        k = max(int(counts.max()), 1)
        self.table = np.full((paths.num_od, k), p_count, dtype=np.int64)
        order = np.argsort(od, kind="stable")
        slot = np.arange(p_count) - np.repeat(np.cumsum(counts) - counts, counts)
        self.table[od[order], slot] = order
        self.slot = np.empty(p_count, dtype=np.int64)
        self.slot[order] = slot
        self.assign = sp.csr_matrix((np.ones(p_count), (np.arange(p_count), od)), shape=(p_count, paths.num_od))
        partner = self.table[od]  # [P, K]
        valid = partner < p_count
        rows, cols = np.nonzero(valid)
        self.pair = np.zeros((p_count, k), dtype=np.int64)
        self.pair[rows, cols] = np.arange(rows.shape[0])
        self.shared = self.delta[rows].multiply(self.delta[partner[rows, cols]]).tocsr()

    def link_flow(self, h: FloatArray) -> FloatArray:
        return np.asarray(self.delta_t @ h.T).T

    def path_sum(self, link_values: FloatArray) -> FloatArray:
        return np.asarray(self.delta @ link_values.T).T

    def cheapest(self, path_cost: FloatArray) -> tuple[IntArray, FloatArray]:
        """(index ``[S, W]`` of each OD pair's cheapest path, its cost)."""
        padded = np.concatenate([path_cost, np.full((path_cost.shape[0], 1), np.inf)], axis=1)
        table_cost = padded[:, self.table]  # [S, W, K]
        k = table_cost.argmin(-1)
        best = np.take_along_axis(np.broadcast_to(self.table, table_cost.shape), k[..., None], -1)[..., 0]
        return best, np.take_along_axis(table_cost, k[..., None], -1)[..., 0]


def relative_gap(h: FloatArray, path_cost: FloatArray, demand: FloatArray, best_cost: FloatArray) -> FloatArray:
    """1 - sum_w d_w c*_w / sum_p h_p c_p, ``[S]`` (0 at Wardrop equilibrium of these costs)."""
    total = (h * path_cost).sum(-1)
    return 1.0 - (demand * best_cost).sum(-1) / np.maximum(total, 1e-300)


def _direction(t: _Tables, h: FloatArray, cost: FloatArray, slope: FloatArray, free: np.ndarray,
               best: IntArray, best_cost: FloatArray) -> FloatArray:
    path_cost, path_slope = t.path_sum(cost), t.path_sum(slope)
    s_count, p_count = h.shape
    rows = np.arange(s_count)[:, None]
    best_of = best[:, t.od]  # [S, P]
    pair_overlap = np.asarray(t.shared @ slope.T).T  # [S, pairs]
    overlap = pair_overlap[rows, t.pair[np.arange(p_count), t.slot[best_of]]]
    curvature = path_slope + np.take_along_axis(path_slope, best_of, 1) - 2.0 * overlap
    excess = path_cost - best_cost[:, t.od]
    shift = np.minimum(h, np.maximum(excess, 0.0) / np.maximum(curvature, 1e-300))
    shift[:, ~free[t.od]] = 0.0
    shift[best_of == np.arange(p_count)] = 0.0
    move = -shift
    move[rows, best] += np.asarray(t.assign.T @ shift.T).T  # each OD pair's best path is distinct
    return move


def _line_search(links: LinkData, kind: Kind, v: FloatArray, dv: FloatArray) -> FloatArray:
    """The step in [0, 1] minimising the objective along v + a dv, per scenario (bisection)."""
    def slope_at(a: FloatArray) -> FloatArray:
        return (links.cost(kind, v + a[:, None] * dv) * dv).sum(-1)

    lo, hi = np.zeros(v.shape[0]), np.ones(v.shape[0])
    done = slope_at(hi) <= 0
    for _ in range(LINE_SEARCH_STEPS):
        mid = 0.5 * (lo + hi)
        up = slope_at(mid) > 0
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    return np.where(done, 1.0, 0.5 * (lo + hi))


def solve(links: LinkData, paths: PathSet, demand: FloatArray, kind: Kind, *, h0: FloatArray | None = None,
          free: np.ndarray | None = None, graph: RoutingGraph | None = None, tol: float = 1e-8,
          max_iter: int = 2000, inner: int = 4) -> Solution:
    """UE or SO path flows for ``demand [S, W]`` (veh/h) on ``paths``.

    The relative gap counts the ``free`` OD pairs only.

    Args:
        h0: starting path flows ``[S, P]`` (default: each OD pair's demand on its first path).
        free: ``[W]`` OD pairs whose flows may move (default all).
        graph: column generation on this graph (paths grow; ``paths`` is extended in place).
        tol: stop when every scenario's relative gap is below this.
        max_iter: gradient-projection iterations at most; inner: iterations between two column rounds.
    """
    demand = np.atleast_2d(np.asarray(demand, dtype=np.float64))
    s_count, w_count = demand.shape
    if w_count != paths.num_od or (demand < 0).any():
        raise AssignmentError(f"demand must be [S, {paths.num_od}] and non-negative, got {demand.shape}")
    free = np.ones(w_count, dtype=bool) if free is None else np.asarray(free, dtype=bool)
    tables = _Tables(paths)
    if h0 is None:
        h = np.zeros((s_count, paths.size))
        h[:, tables.table[:, 0]] = demand
    else:
        h = np.array(h0, dtype=np.float64)
    iterations, gap = 0, np.full(s_count, np.inf)
    while iterations < max_iter:
        v = tables.link_flow(h)
        cost, slope = links.cost_and_slope(kind, v)
        priced = graph is None or iterations % inner == 0  # c* is over all paths only after a column round
        if graph is not None and priced:
            size = paths.size
            for s in range(s_count):
                for w, p in enumerate(graph.shortest_paths(np.maximum(cost[s], 1e-12))):
                    if free[w]:
                        paths.add(w, p)
            if paths.size > size:
                h = np.concatenate([h, np.zeros((s_count, paths.size - size))], axis=1)
                tables = _Tables(paths)
        path_cost = tables.path_sum(cost)
        best, best_cost = tables.cheapest(path_cost)
        gap = relative_gap(h * free[tables.od], path_cost, demand * free, best_cost)
        if priced and (gap < tol).all():
            break
        move = _direction(tables, h, cost, slope, free, best, best_cost)
        step = _line_search(links, kind, v, tables.link_flow(move))
        h = np.maximum(h + step[:, None] * move, 0.0)
        iterations += 1
    return Solution(paths, h, tables.link_flow(h), gap, iterations)
