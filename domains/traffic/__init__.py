"""Traffic route choice: demand packets as agents on TNTP road networks (issue 11).

Data flow: ``network`` reads a shipped TNTP network (``data/``, attribution in ``data/SOURCE.md``);
``paths`` finds the k shortest free-flow routes (networkx) and shortest-path trees (scipy);
``costs`` holds the BPR link costs of the user-equilibrium and system-optimum programs;
``assignment`` is the exact structured solver (path-based gradient projection, batched over
scenarios, optional column generation) and ``layer`` the same route-set program as a cvxpylayers
layer; ``scenarios`` draws demand per seed; ``packets`` splits it into the agents; ``system`` bundles
the per-network constants; ``reference`` solves and caches each scenario's UE and SO; ``env`` is the
:class:`guidedmarl.MultiAgentVecEnv`; ``model`` the analytical model; ``heuristics`` the baselines;
``domain`` registers it all as ``--domain traffic``. Formulas: docs/domains/traffic.md.
"""

from .domain import TrafficDomain
from .settings import TrafficSettings

__all__ = ["TrafficDomain", "TrafficSettings"]
