"""Descent guidance for MPE's ``simple_spread`` (package ``mpe2``), an environment nobody here wrote.

This package holds no environment: the environment is PettingZoo's, run through the generic
adapter (``--domain pettingzoo:mpe2.simple_spread_v3``). What it adds is what a researcher
brings to an outside benchmark: an :class:`~guidedmarl.AnalyticalModel` of the particles'
motion (:class:`SpreadModel`) and the rules to compare against (:mod:`.heuristics`)::

    guidedmarl run --domain pettingzoo:mpe2.simple_spread_v3 --algo dgpg \\
        --set domain_config.model=guidedmarl_domains.mpe:SpreadModel \\
        --set domain_config.heuristics.assignment=guidedmarl_domains.mpe:AssignmentRule
"""

from guidedmarl_domains.mpe.heuristics import AssignmentRule, NearestLandmarkRule, RandomRule
from guidedmarl_domains.mpe.model import SpreadContext, SpreadModel, spread_context

__all__ = ["AssignmentRule", "NearestLandmarkRule", "RandomRule", "SpreadContext", "SpreadModel", "spread_context"]
