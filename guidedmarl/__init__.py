"""guidedmarl: Descent-Guided Policy Gradient for cooperative multi-agent RL.

Data flow: environment (:mod:`guidedmarl.env`) -> analytical model
(:mod:`guidedmarl.analytical`) -> guided estimator (:mod:`guidedmarl.guidance`) -> trainer
(:mod:`guidedmarl.training`); :mod:`guidedmarl.domain` plugs problems in, and
:func:`guidedmarl.run.run` ties one experiment together.
"""

from guidedmarl.analytical.model import AnalyticalModel, GuidanceError, SparseInfluence
from guidedmarl.config import ConfigError, EvalConfig, GuidanceConfig, PPOConfig, RunConfig
from guidedmarl.domain import Domain, HeuristicPolicy, available_domains, get_domain, register_domain
from guidedmarl.env import EnvSpec, MultiAgentVecEnv, Step
from guidedmarl.guidance import ConstantAlpha, GuidedEstimator, LinearAlpha
from guidedmarl.training import Trainer, TrainingError

__version__ = "0.1.0"

__all__ = [
    "AnalyticalModel",
    "ConfigError",
    "ConstantAlpha",
    "Domain",
    "EnvSpec",
    "EvalConfig",
    "GuidanceConfig",
    "GuidanceError",
    "GuidedEstimator",
    "HeuristicPolicy",
    "LinearAlpha",
    "MultiAgentVecEnv",
    "PPOConfig",
    "RunConfig",
    "SparseInfluence",
    "Step",
    "Trainer",
    "TrainingError",
    "available_domains",
    "get_domain",
    "register_domain",
]
