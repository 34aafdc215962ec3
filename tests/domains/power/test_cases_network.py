"""Case loading (pypower, PGLib via matpowercaseframes) and the sparse PTDF, against pypower."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pypower import idx_brch, idx_bus, idx_gen
from pypower.api import case30, case118, ext2int, ppoption, rundcpf
from pypower.makePTDF import makePTDF

from guidedmarl_domains.power.cases import (
    CaseError,
    available_cases,
    convert,
    load_case,
    resolve_case_name,
)
from guidedmarl_domains.power.network import DCNetwork


def test_case30_in_per_unit() -> None:
    case = load_case("case30")
    ppc = case30()
    assert (case.num_buses, case.num_generators, case.num_branches) == (30, 6, 41)
    assert case.base_mva == 100.0
    np.testing.assert_allclose(case.pmax, ppc["gen"][:, idx_gen.PMAX] / 100.0)
    np.testing.assert_allclose(case.bus_demand.sum(), ppc["bus"][:, idx_bus.PD].sum() / 100.0)
    # cost of p per unit equals the MATPOWER polynomial of P = 100 p MW
    p = np.array([0.4, 0.3, 0.2, 0.1, 0.2, 0.3])
    mw = 100.0 * p
    c2, c1, c0 = ppc["gencost"][:, 4], ppc["gencost"][:, 5], ppc["gencost"][:, 6]
    assert case.cost(p) == pytest.approx(float((c2 * mw**2 + c1 * mw + c0).sum()), rel=1e-12)


def test_unknown_case_lists_valid_names() -> None:
    with pytest.raises(CaseError, match=r"unknown power case 'case31'.*case30.*case118.*pglib_opf_case9241_pegase"):
        load_case("case31")


def test_pglib_names_resolve_with_or_without_prefix() -> None:
    assert resolve_case_name("case9241_pegase") == ("pglib", "pglib_opf_case9241_pegase")
    assert resolve_case_name("pglib_opf_case9241_pegase") == ("pglib", "pglib_opf_case9241_pegase")
    assert resolve_case_name("case30") == ("pypower", "case30")  # pypower's IEEE case wins
    names = available_cases()
    assert "case118" in names and "pglib_opf_case300_ieee" in names and len(names) > 60


def test_pglib_parse_matches_pypower_network() -> None:
    """PGLib's case118 (parsed by matpowercaseframes) has pypower's case118 network: same PTDF."""
    pglib = load_case("pglib_opf_case118_ieee")
    ppc = ext2int(case118())
    expected = makePTDF(ppc["baseMVA"], ppc["bus"], ppc["branch"])
    mine = DCNetwork(pglib).ptdf_columns(np.arange(pglib.num_buses))
    np.testing.assert_allclose(mine, expected, atol=1e-10)
    # PGLib's version has synchronous condensers (PMAX = PMIN = 0): they are not agents
    assert pglib.num_generators == 19 and np.all(pglib.pmax > pglib.pmin)
    assert np.all(pglib.fixed_injection == 0)


@pytest.mark.parametrize("name,factory", [("case30", case30), ("case118", case118)])
def test_ptdf_matches_make_ptdf(name: str, factory) -> None:
    case = load_case(name)
    ppc = ext2int(factory())
    expected = makePTDF(ppc["baseMVA"], ppc["bus"], ppc["branch"])
    network = DCNetwork(case)
    np.testing.assert_allclose(network.ptdf_columns(np.arange(case.num_buses)), expected, atol=1e-10)
    np.testing.assert_allclose(network.ptdf_gen, expected[:, case.gen_bus], atol=1e-10)


def _tables(ppc: dict) -> dict:
    tables = {k: np.array(ppc[k], dtype=np.float64) for k in ("bus", "gen", "branch", "gencost")}
    return {"baseMVA": ppc["baseMVA"], **tables}


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # numpy.matrix inside pypower
def test_flows_with_phase_shifter_and_taps_match_pypower_dc_power_flow() -> None:
    """Flows = PTDF_gen p + demand_flows(d) equal pypower's rundcpf, with a phase shifter and a tap."""
    ppc = case30()
    ppc["branch"][5, idx_brch.SHIFT] = 4.0  # degrees
    ppc["branch"][9, idx_brch.TAP] = 0.95
    result, success = rundcpf(ppc, ppoption(VERBOSE=0, OUT_ALL=0))
    assert success
    case = convert(_tables(ppc), "case30-shifted", "pypower")
    network = DCNetwork(case)
    p = result["gen"][case.gen_rows, idx_gen.PG] / case.base_mva
    flows = network.ptdf_gen @ p + network.demand_flows(case.bus_demand - case.fixed_injection)
    np.testing.assert_allclose(flows, result["branch"][:, idx_brch.PF] / case.base_mva, atol=1e-9)


def test_fixed_and_out_of_service_units_and_unlimited_lines() -> None:
    ppc = case30()
    ppc["gen"][1, idx_gen.GEN_STATUS] = 0  # out of service: dropped
    ppc["gen"][2, [idx_gen.PMIN, idx_gen.PMAX]] = 20.0  # fixed 20 MW: an injection, not an agent
    ppc["branch"][3, idx_brch.BR_STATUS] = 0
    ppc["branch"][4, idx_brch.RATE_A] = 0  # unlimited
    case = convert(_tables(ppc), "modified", "pypower")
    assert case.num_generators == 4
    assert list(case.gen_rows) == [0, 3, 4, 5]
    bus = int(ppc["gen"][2, idx_gen.GEN_BUS]) - 1
    assert case.fixed_injection[bus] == pytest.approx(0.2) and case.fixed_injection.sum() == pytest.approx(0.2)
    assert case.num_branches == 40 and np.isinf(case.branch_rate[3])  # branch 4 is now row 3
    assert DCNetwork(case).num_monitored == 39


def test_unusable_cases_are_rejected() -> None:
    ppc = case30()
    pwl = _tables(ppc)
    pwl["gencost"][0, 0] = 1  # piecewise-linear cost model
    with pytest.raises(CaseError, match="polynomial"):
        convert(pwl, "pwl", "pypower")
    island = _tables(ppc)
    # bus 26 hangs on branch 25-26 only (MATPOWER case30): cutting it strands its load
    cut = np.flatnonzero((island["branch"][:, 0] == 25) & (island["branch"][:, 1] == 26))
    island["branch"][cut, idx_brch.BR_STATUS] = 0
    with pytest.raises(CaseError, match="not connected to the slack bus"):
        convert(island, "island", "pypower")


def test_loaded_case_is_read_only() -> None:
    case = load_case("case30")
    with pytest.raises(ValueError):
        case.pmax[0] = 1.0
    assert dataclasses.replace(case, branch_rate=case.branch_rate * 2).branch_rate[0] == 2 * case.branch_rate[0]
