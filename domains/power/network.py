"""DC power flow through the PTDF matrix, computed column by column with a sparse LU.

DC model (per unit, angles in radians): with B_bus = C^T diag(b) C (C the branch-bus
incidence, +1 at the from bus, -1 at the to bus) and the slack angle fixed at 0,

    P_inj = B_bus theta + P_shift,      f = diag(b) C theta + f_shift,

where f_shift = -b * shift and P_shift = C^T f_shift are the quiescent injections of phase
shifters (as in MATPOWER's makeBdc). Eliminating theta,

    f = PTDF (P_inj - P_shift) + f_shift,   PTDF = diag(b) C [0, B_red^-1],

with B_red the bus matrix without the slack's row and column; the slack column of the PTDF
is zero, so any imbalance sum(P_inj) != 0 is taken up at the slack bus.

Never forming B_red^-1: B_red is factorised once (``scipy.sparse.linalg.splu``) and solved
for the right-hand sides actually needed: unit injections at the generator buses (the PTDF
columns an agent's output moves) and each period's whole net demand vector (one aggregated
right-hand side per period, not one per load bus).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csc_matrix, csr_matrix
from scipy.sparse.linalg import splu

from .cases import CaseError, PowerCase

FloatArray = NDArray[np.float64]
SOLVE_CHUNK = 16
"""Right-hand sides per sparse triangular solve."""


class DCNetwork:
    """Sparse DC power-flow model of a :class:`PowerCase`.

    Attributes:
        case: the case.
        monitored: ``[L_m]`` indices of the branches with a finite flow limit (the lines in
            the state and the reward).
        rate: ``[L_m]`` their limits (per unit).
        ptdf_gen: ``[L_m, G]`` PTDF of the monitored lines with respect to each generator's
            bus (float64): d f / d p_i.
        shift_offset: ``[L_m]`` flows of the phase shifters with no injection (per unit),
            f_shift - PTDF P_shift.
    """

    def __init__(self, case: PowerCase) -> None:
        self.case = case
        nb, nl = case.num_buses, case.num_branches
        rows = np.concatenate([np.arange(nl), np.arange(nl)])
        cols = np.concatenate([case.branch_from, case.branch_to])
        incidence = csr_matrix((np.concatenate([np.ones(nl), -np.ones(nl)]), (rows, cols)), shape=(nl, nb))
        self._bf = csr_matrix(incidence.multiply(case.branch_b[:, None]))  # diag(b) C
        bbus = (incidence.T @ self._bf).tocsc()
        self._keep = np.flatnonzero(np.arange(nb) != case.slack)
        reduced = csc_matrix(bbus[self._keep][:, self._keep])
        try:
            # B_red is symmetric: a minimum-degree ordering on A^T + A keeps the factors
            # sparse (COLAMD, scipy's default, was 20x slower to solve on PGLib case9241)
            self._lu = splu(reduced, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
        except RuntimeError as exc:  # "Factor is exactly singular"
            raise CaseError(f"case {case.name}: the DC bus matrix is singular ({exc})") from None

        self.monitored = np.flatnonzero(np.isfinite(case.branch_rate))
        self.rate = case.branch_rate[self.monitored]
        self.ptdf_gen = self.ptdf_columns(case.gen_bus)[self.monitored]
        f_shift = -case.branch_b * case.branch_shift
        p_shift = incidence.T @ f_shift
        self.shift_offset = (f_shift - self.flows(p_shift, all_branches=True))[self.monitored]

    @property
    def num_monitored(self) -> int:
        return int(self.monitored.shape[0])

    def _angles(self, injections: FloatArray) -> FloatArray:
        """theta ``[B, K]`` for injections ``[B, K]`` (slack angle 0)."""
        theta = np.zeros(injections.shape, dtype=np.float64, order="F")
        if self._keep.size:
            rhs = injections[self._keep]
            # SuperLU's multi-column solve slows down sharply past a few dozen columns
            # (measured on case9241: 16 columns at a time is 40x faster than 960 at once)
            for start in range(0, rhs.shape[1], SOLVE_CHUNK):
                block = np.asfortranarray(rhs[:, start : start + SOLVE_CHUNK])
                theta[self._keep, start : start + SOLVE_CHUNK] = self._lu.solve(block)
        return theta

    def ptdf_columns(self, buses: NDArray[np.int64]) -> FloatArray:
        """PTDF columns ``[L, K]`` (all branches) for unit injections at ``buses`` ``[K]``.

        Each distinct bus is solved once; repeated buses share their column.
        """
        unique, inverse = np.unique(np.asarray(buses, dtype=np.int64), return_inverse=True)
        rhs = np.zeros((self.case.num_buses, unique.size))
        rhs[unique, np.arange(unique.size)] = 1.0
        return np.asarray(self._bf @ self._angles(rhs))[:, inverse]

    def flows(self, injections: FloatArray, all_branches: bool = False) -> FloatArray:
        """PTDF times bus injections: ``[..., B] -> [..., L_m]`` (or ``[..., L]`` with ``all_branches``).

        One sparse solve for all leading entries at once (no phase-shift offset added).
        """
        inj = np.asarray(injections, dtype=np.float64)
        lead = inj.shape[:-1]
        flat = inj.reshape(-1, inj.shape[-1]).T  # [B, K]
        f = np.asarray(self._bf @ self._angles(flat)).T  # [K, L]
        if not all_branches:
            f = f[:, self.monitored]
        return f.reshape(*lead, f.shape[-1])

    def demand_flows(self, net_demand: FloatArray) -> FloatArray:
        """Monitored-line flows caused by bus net demand ``[..., B]`` plus the phase shifters.

        With generator outputs p the flows are then ``ptdf_gen @ p + demand_flows(d)``.
        """
        return -self.flows(net_demand) + self.shift_offset
