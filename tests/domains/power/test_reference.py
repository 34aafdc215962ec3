"""The reference program (DC-OPF) against pypower's rundcopf, across backends, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pypower import idx_brch, idx_gen
from pypower.api import case30, case118, ppoption, rundcopf

from guidedmarl_domains.power.cases import raw_tables
from guidedmarl_domains.power.reference import (
    DispatchInfeasibleError,
    DispatchProgram,
    ScenarioBank,
    check_demand,
    solve_dispatch,
    verify_dispatch,
)
from guidedmarl_domains.power.scenarios import make_scenarios
from guidedmarl_domains.power.settings import PowerSettings
from guidedmarl_domains.power.system import PowerSystem

torch.set_num_threads(1)

pytestmark = [
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),  # numpy.matrix inside pypower
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),  # cvxpylayers' backward
]


def nominal_reference(name: str, backend: str, rating_scale: float) -> tuple[PowerSystem, np.ndarray]:
    """The reference dispatch (one period) of the case's own nominal demand."""
    system = PowerSystem(PowerSettings(case=name, horizon=1, rating_scale=rating_scale))
    case = system.case
    demand = case.bus_demand - case.fixed_injection
    result = solve_dispatch(
        DispatchProgram.of(system),
        np.array([[demand.sum()]]),
        system.network.demand_flows(demand)[None, None],
        [0],
        backend,  # type: ignore[arg-type]
    )
    assert result.overload.max() < 1e-9
    return system, result.output[0, 0]


@pytest.mark.parametrize("backend", ["sparse", "cvxpylayers"])
@pytest.mark.parametrize(
    "name,factory,rating_scale",
    [("case30", case30, 1.0), ("case118", case118, 1.0), ("case118", case118, 0.02)],
    ids=["case30", "case118", "case118-congested"],
)
def test_reference_matches_rundcopf(name: str, factory, rating_scale: float, backend: str) -> None:
    """Total cost within 0.1 %, every output within 1e-3 p.u. of pypower's DC OPF.

    case118's line limits are 9900 MW (never binding); scaled by 0.02 (198 MW) six lines bind,
    which exercises the line constraints.
    """
    ppc = factory()
    ppc["branch"][:, idx_brch.RATE_A] *= rating_scale
    expected = rundcopf(ppc, ppoption(VERBOSE=0, OUT_ALL=0))
    assert expected["success"]
    system, p = nominal_reference(name, backend, rating_scale)
    case = system.case
    assert float(case.cost(p)) == pytest.approx(expected["f"], rel=1e-3)
    np.testing.assert_allclose(p, expected["gen"][case.gen_rows, idx_gen.PG] / case.base_mva, atol=1e-3)
    loading = np.abs(system.network.ptdf_gen @ p + system.network.demand_flows(case.bus_demand)) / system.network.rate
    if rating_scale < 1:
        assert np.sum(loading > 1 - 1e-6) >= 3  # binding lines
        assert loading.max() < 1 + 1e-6


@pytest.mark.parametrize("name", ["pglib_opf_case118_ieee", "pglib_opf_case300_ieee"])
def test_linear_cost_reference_matches_rundcopf_on_pglib(name: str) -> None:
    """PGLib costs are linear: the sparse backend solves an LP with HiGHS; pypower solves the
    same tables (parsed by matpowercaseframes) with its own DC OPF."""
    tables = raw_tables(name)
    gen = np.zeros((tables["gen"].shape[0], 21))  # PGLib omits MATPOWER's ramp columns
    gen[:, : tables["gen"].shape[1]] = tables["gen"]
    ppc = {"version": "2", "baseMVA": tables["baseMVA"], "gen": gen}
    ppc |= {k: np.array(tables[k]) for k in ("bus", "branch", "gencost")}
    expected = rundcopf(ppc, ppoption(VERBOSE=0, OUT_ALL=0))
    assert expected["success"]
    system, p = nominal_reference(name, "sparse", 1.0)
    case = system.case
    assert np.all(case.cost_q == 0)
    assert float(case.cost(p)) == pytest.approx(expected["f"], rel=1e-3)
    np.testing.assert_allclose(p, expected["gen"][case.gen_rows, idx_gen.PG] / case.base_mva, atol=1e-3)


def test_backends_agree_over_a_day_with_binding_ramps() -> None:
    settings = PowerSettings(case="case30", horizon=24, ramp_per_hour=0.08)
    system = PowerSystem(settings)
    program = DispatchProgram.of(system)
    scenarios = make_scenarios(system, [3, 4])
    demand = np.stack([s.demand[:24] for s in scenarios])
    offsets = np.stack([s.flow_offset[:24] for s in scenarios])
    layer = solve_dispatch(program, demand, offsets, [3, 4], "cvxpylayers").output
    sparse = solve_dispatch(program, demand, offsets, [3, 4], "sparse").output
    np.testing.assert_allclose(layer, sparse, atol=1e-5)
    steps = np.abs(np.diff(sparse, axis=1))
    assert np.all(steps <= program.ramp + 1e-7)
    assert np.any(steps >= program.ramp - 1e-7)  # some ramp limit binds


def test_layer_gradients_pass_gradcheck() -> None:
    """d(dispatch)/d(demand, demand flows) of the cvxpylayers program, float64, case9 over 2 periods."""
    from guidedmarl_domains.power.opf_layer import DispatchLayer

    system = PowerSystem(PowerSettings(case="case9", horizon=2))
    scenario = make_scenarios(system, [0])[0]
    layer = DispatchLayer(DispatchProgram.of(system), 2)
    demand = torch.tensor(scenario.demand[None, :2], dtype=torch.float64, requires_grad=True)
    offsets = torch.tensor(scenario.flow_offset[None, :2], dtype=torch.float64, requires_grad=True)
    p = layer(demand, offsets)
    assert p.shape == (1, 2, 3)
    torch.testing.assert_close(p.sum(-1), demand, atol=1e-7, rtol=0)
    assert torch.autograd.gradcheck(layer, (demand, offsets), eps=1e-4, atol=1e-5, rtol=1e-3)


def test_demand_beyond_capacity_names_case_seed_and_period() -> None:
    program = DispatchProgram.of(PowerSystem(PowerSettings(case="case30")))
    demand = np.full((2, 3), 1.5)
    demand[1, 2] = 10.0  # above sum pmax = 3.35 p.u.
    with pytest.raises(DispatchInfeasibleError, match=r"case case30, scenario seed 8, period 2: demand 10 p\.u\."):
        check_demand(program, demand, [7, 8])


def test_infeasible_settings_fail_clearly_at_reset() -> None:
    from guidedmarl_domains.power import PowerDomain

    peak = {"horizon": 4, "start_hour": 17.0, "load": {"level_low": 1.9, "level_high": 2.0}}
    domain = PowerDomain.from_config(6, peak)  # 1.9 x 189 MW at the evening peak > 335 MW of generation
    with pytest.raises(DispatchInfeasibleError, match=r"case case30, scenario seed 5, period \d+: .*load"):
        domain.make_env(1).reset([5])
    slow = PowerDomain.from_config(6, {"horizon": 12, "ramp_per_hour": 0.001})
    with pytest.raises(DispatchInfeasibleError, match="ramp_per_hour"):
        slow.make_env(1).reset([5])


def test_verify_rejects_a_dispatch_that_breaks_a_constraint() -> None:
    program = DispatchProgram.of(PowerSystem(PowerSettings(case="case30")))
    p = np.tile((program.pmin + program.pmax) / 2, (1, 2, 1))
    demand = p.sum(-1)
    verify_dispatch(program, p, demand, [0])
    with pytest.raises(DispatchInfeasibleError, match="power balance"):
        verify_dispatch(program, p, demand + 0.1, [0])
    bad = p.copy()
    bad[0, 1, 0] = program.pmax[0] + 0.01
    with pytest.raises(DispatchInfeasibleError, match="generator limit|ramp limit"):
        verify_dispatch(program, bad, bad.sum(-1), [0])


def test_overload_is_penalised_and_reported_not_an_error() -> None:
    """Limits no dispatch can meet: the soft line limits leave an overload and report it."""
    bank = ScenarioBank(PowerSystem(PowerSettings(case="case30", horizon=4, rating_scale=0.3)))
    (planned,) = bank.get([1])
    assert planned.reference_overload.min() > 0
    program = bank.program
    np.testing.assert_allclose(
        planned.reference_overload, program.overload(planned.reference, planned.scenario.flow_offset[:4])
    )


def test_bank_solves_each_scenario_once_and_evicts_old_ones() -> None:
    bank = ScenarioBank(PowerSystem(PowerSettings(case="case30", horizon=3)), capacity=2)
    first = bank.get([1, 2])
    assert bank.solves == 2
    again = bank.get([2, 1])
    assert bank.solves == 2 and again[0] is first[1] and again[1] is first[0]
    bank.get([3])
    assert bank.solves == 3 and len(bank._cache) == 2 and 2 not in bank._cache  # least recently used went
