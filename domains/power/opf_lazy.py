"""The reference program with lazy line limits (constraint generation), for any case size.

A network with thousands of lines and a day of periods has millions of (period, line)
flow constraints, nearly all of them slack at the optimum. Standard practice in DC-OPF
(lazy line limits, as in production market-clearing engines) is constraint generation:

1. solve the program with balance, generator and ramp constraints only;
2. compute every monitored flow of the solution (one dense product with the PTDF) and add
   the (period, line) pairs that exceed their limit, each with its overload slack;
3. re-solve; stop when no pair outside the program is violated (``LINE_TOL``).

Each round solves a relaxation of the full program; the last one's solution satisfies every
line limit that is not in the program, so it is feasible, hence optimal, for the full
program. Rounds are bounded by ``MAX_ROUNDS``. One scenario is one program over its whole
horizon: T G outputs plus one slack per added pair.

Solvers (both measured on this machine, see docs/domains/power.md):

* linear costs (all PGLib cases): HiGHS's dual simplex, warm-started after each round's
  added rows. An interior-point solver was 30x slower on pglib_opf_case9241_pegase over 12
  periods (9.7 s against 0.3 s per round): each added PTDF row is dense in all generators
  of its period and, with the ramp constraints linking periods, the KKT factorisation
  fills in.
* quadratic costs (the IEEE cases of pypower, at most a few hundred generators): Clarabel
  (interior point), rebuilt each round. HiGHS's active-set QP solver was slower there and
  stopped with "Solve error" on a case118 day (primal infeasibility 2.6e-5).

Both are passed the program in matrix form built with scipy.sparse.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

from .cases import FloatArray
from .program import DispatchProgram, DispatchSolverError

MAX_ROUNDS = 50
LINE_TOL = 1e-7
"""Relative flow excess above which a (period, line) pair is added to the program."""
CLARABEL_TOL = 1e-9

Pairs = tuple[np.ndarray, np.ndarray]


def _static_rows(program: DispatchProgram, horizon: int) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """Balance rows ``[T, TG]`` and ramp rows ``[(T-1)G, TG]`` (p_t - p_(t-1); None if T = 1)."""
    g = program.num_generators
    balance = sp.kron(sp.identity(horizon), np.ones((1, g)), format="csr")
    if horizon == 1:
        return balance, None
    diff = sp.diags([-np.ones(horizon - 1), np.ones(horizon - 1)], [0, 1], shape=(horizon - 1, horizon))
    return balance, sp.kron(diff, sp.identity(g), format="csr")


def _flow_rows(program: DispatchProgram, pairs: Pairs, horizon: int) -> sp.csr_matrix:
    """PTDF_l p_t for K (period, line) pairs: ``[K, TG]``."""
    t_idx, l_idx = pairs
    k, g = t_idx.size, program.num_generators
    rows = np.repeat(np.arange(k), g)
    cols = (t_idx[:, None] * g + np.arange(g)[None, :]).ravel()
    return sp.csr_matrix((program.ptdf[l_idx].ravel(), (rows, cols)), shape=(k, horizon * g))


# ----------------------------------------------------------------------------- HiGHS (LP)
@contextmanager
def _stdout_silenced() -> Iterator[None]:
    """Silence the C-level stdout (HiGHS prints a banner when the first solver is built)."""
    try:
        fd = os.dup(1)
    except OSError:  # pragma: no cover - no stdout at all
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(fd, 1)
        os.close(fd)


class _HighsProgram:
    """The program in HiGHS, extended in place each round (simplex warm start)."""

    def __init__(self, program: DispatchProgram, demand: FloatArray, offsets: FloatArray) -> None:
        import highspy

        with _stdout_silenced():
            self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("threads", 1)
        self.program, self.offsets = program, offsets
        self.horizon = demand.shape[0]
        tile = lambda v: np.tile(v, self.horizon)  # noqa: E731
        self._add_columns(tile(program.linear), tile(program.pmin), tile(program.pmax))
        balance, ramp = _static_rows(program, self.horizon)
        self._add_rows(balance, demand, demand)
        if ramp is not None:
            r = np.tile(program.ramp, self.horizon - 1)
            self._add_rows(ramp, -r, r)

    def _add_columns(self, cost: FloatArray, lower: FloatArray, upper: FloatArray) -> None:
        n = cost.shape[0]
        empty_i, empty_f = np.zeros(0, dtype=np.int32), np.zeros(0)
        self.h.addCols(n, cost, lower, upper, 0, np.zeros(n, dtype=np.int32), empty_i, empty_f)

    def _add_rows(self, matrix: sp.spmatrix, lower: FloatArray, upper: FloatArray) -> None:
        m = sp.csr_matrix(matrix)
        self.h.addRows(
            m.shape[0],
            np.ascontiguousarray(lower, dtype=np.float64),
            np.ascontiguousarray(upper, dtype=np.float64),
            m.nnz,
            m.indptr[:-1].astype(np.int32),
            m.indices.astype(np.int32),
            m.data.astype(np.float64),
        )

    def add_lines(self, pairs: Pairs) -> None:
        """Per pair a slack column s >= 0 and rows PTDF_l p_t - s <= F - f0, PTDF_l p_t + s >= -F - f0."""
        k = pairs[0].size
        first = self.h.getNumCol()
        self._add_columns(np.full(k, self.program.line_penalty), np.zeros(k), np.full(k, np.inf))
        outputs = self.horizon * self.program.num_generators
        flow = sp.hstack([_flow_rows(self.program, pairs, self.horizon), sp.csr_matrix((k, first - outputs + k))])
        slack = sp.csr_matrix((np.ones(k), (np.arange(k), first + np.arange(k))), shape=(k, first + k))
        f0, rate = self.offsets[pairs], self.program.rate[pairs[1]]
        self._add_rows(flow - slack, np.full(k, -np.inf), rate - f0)
        self._add_rows(flow + slack, -rate - f0, np.full(k, np.inf))

    def solve(self) -> tuple[FloatArray | None, str]:
        self.h.run()
        status = self.h.modelStatusToString(self.h.getModelStatus())
        if status != "Optimal":
            return None, f"HiGHS status {status!r}"
        n = self.horizon * self.program.num_generators
        return np.asarray(self.h.getSolution().col_value[:n]), status


# ----------------------------------------------------------------------------- Clarabel (QP)
class _ClarabelProgram:
    """The program for Clarabel (minimise 1/2 z'Pz + c'z, Az + s = b, s in cones), rebuilt per round."""

    def __init__(self, program: DispatchProgram, demand: FloatArray, offsets: FloatArray) -> None:
        self.program, self.demand, self.offsets = program, demand, offsets
        self.horizon = demand.shape[0]
        self.balance, self.ramp = _static_rows(program, self.horizon)
        self.pairs: list[Pairs] = []

    def add_lines(self, pairs: Pairs) -> None:
        self.pairs.append(pairs)

    def solve(self) -> tuple[FloatArray | None, str]:
        import clarabel

        p, horizon = self.program, self.horizon
        n = horizon * p.num_generators
        t_idx = np.concatenate([q[0] for q in self.pairs]) if self.pairs else np.zeros(0, dtype=np.int64)
        l_idx = np.concatenate([q[1] for q in self.pairs]) if self.pairs else np.zeros(0, dtype=np.int64)
        k = t_idx.size

        def wide(m: sp.spmatrix) -> sp.csr_matrix:  # append the K slack columns
            return sp.hstack([m, sp.csr_matrix((m.shape[0], k))], format="csr")

        eye = sp.identity(n, format="csr")
        blocks = [wide(self.balance), wide(eye), wide(-eye)]
        rhs = [self.demand, np.tile(p.pmax, horizon), -np.tile(p.pmin, horizon)]
        if self.ramp is not None:
            r = np.tile(p.ramp, horizon - 1)
            blocks += [wide(self.ramp), wide(-self.ramp)]
            rhs += [r, r]
        if k:
            flow = wide(_flow_rows(p, (t_idx, l_idx), horizon))
            slack = sp.hstack([sp.csr_matrix((k, n)), -sp.identity(k)], format="csr")
            f0, rate = self.offsets[t_idx, l_idx], p.rate[l_idx]
            blocks += [flow + slack, -flow + slack, slack]
            rhs += [rate - f0, rate + f0, np.zeros(k)]
        a = sp.vstack(blocks, format="csc")
        quad = sp.diags(np.concatenate([np.tile(2.0 * p.quadratic, horizon), np.zeros(k)]), format="csc")
        lin = np.concatenate([np.tile(p.linear, horizon), np.full(k, p.line_penalty)])
        cones = [clarabel.ZeroConeT(horizon), clarabel.NonnegativeConeT(a.shape[0] - horizon)]
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = CLARABEL_TOL
        solution = clarabel.DefaultSolver(quad, lin, a, np.concatenate(rhs), cones, settings).solve()
        status = str(solution.status)
        if status != "Solved":
            return None, f"Clarabel status {status!r}"
        return np.asarray(solution.x[:n]), status


# ----------------------------------------------------------------------------- the loop
def solve_scenario(
    program: DispatchProgram, demand: FloatArray, offsets: FloatArray, seed: int
) -> tuple[FloatArray, int]:
    """(outputs ``[T, G]``, rounds) for one scenario: ``demand [T]``, ``offsets [T, L]``."""
    horizon, g = demand.shape[0], program.num_generators
    quadratic = bool(np.any(program.quadratic > 0))
    model: _HighsProgram | _ClarabelProgram = (
        _ClarabelProgram(program, demand, offsets) if quadratic else _HighsProgram(program, demand, offsets)
    )
    active = np.zeros(offsets.shape, dtype=bool)
    for rounds in range(1, MAX_ROUNDS + 1):
        x, status = model.solve()
        if x is None:
            raise DispatchSolverError(
                f"case {program.case_name}, scenario seed {seed}: {status} on the reference program "
                f"({int(active.sum())} line constraints)"
            )
        p = x.reshape(horizon, g)
        excess = np.abs(program.flows(p, offsets)) - program.rate
        new = (excess > LINE_TOL * np.maximum(1.0, program.rate)) & ~active
        if not new.any():
            return p, rounds
        model.add_lines(np.nonzero(new))
        active |= new
    raise DispatchSolverError(
        f"case {program.case_name}, scenario seed {seed}: line constraint generation did not settle in "
        f"{MAX_ROUNDS} rounds ({int(active.sum())} line constraints)"
    )


def solve_lazy(program: DispatchProgram, demand: FloatArray, offsets: FloatArray, seeds: list[int]) -> FloatArray:
    """Reference outputs ``[S, T, G]`` for ``demand [S, T]``, ``offsets [S, T, L]`` (one program per scenario)."""
    return np.stack([solve_scenario(program, demand[k], offsets[k], seed)[0] for k, seed in enumerate(seeds)])
