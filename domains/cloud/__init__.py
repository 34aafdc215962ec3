"""Cloud scheduling (flagship domain): dispatchers send jobs to heterogeneous servers.

Data flow: ``workload`` (scenarios) and ``fleet`` (servers, zones) feed the batched
``simulator``; ``env`` wraps it as a :class:`guidedmarl.MultiAgentVecEnv`; ``model`` is the
analytical model (committed utilisation, load-balanced reference); ``heuristics`` are the
baselines; ``domain`` registers all of it as ``--domain cloud``.
"""

from .domain import CloudDomain
from .settings import CloudSettings

__all__ = ["CloudDomain", "CloudSettings"]
