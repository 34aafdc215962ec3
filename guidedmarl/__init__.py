"""guidedmarl: Descent-Guided Policy Gradient for cooperative multi-agent RL.

Data flow: environment (:mod:`guidedmarl.env`) -> analytical model
(:mod:`guidedmarl.analytical`) -> guidance weights and advantage estimators
(:mod:`guidedmarl.guidance`) -> trainer (:mod:`guidedmarl.training`).
:mod:`guidedmarl.domain` plugs problems in, :mod:`guidedmarl.learners` names the learners
(critic + estimator), and :func:`guidedmarl.experiment.run_experiment` ties one experiment
together. :mod:`guidedmarl.testing` checks a domain against the contract.
"""

from guidedmarl.analytical.model import AnalyticalModel, SparseInfluence
from guidedmarl.config import EvalConfig, PPOConfig, RunConfig
from guidedmarl.domain import Domain, HeuristicPolicy, available_domains, get_domain, register_domain
from guidedmarl.env import EnvSpec, MultiAgentVecEnv, Step
from guidedmarl.errors import (
    CheckpointError,
    ConfigError,
    DomainError,
    GuidanceError,
    GuidedMarlError,
    SolverError,
    StudyError,
    TrainingError,
)
from guidedmarl.guidance import (
    AdvantageEstimator,
    ConstantAlpha,
    EstimatorConfig,
    GuidedConfig,
    GuidedEstimator,
    LinearAlpha,
    guidance_weights,
    register_estimator,
)
from guidedmarl.learners import LearnerConfig, Preset, register_preset
from guidedmarl.training import Critic, CriticConfig, Trainer, register_critic

__version__ = "0.1.0"

__all__ = [
    "AdvantageEstimator",
    "AnalyticalModel",
    "CheckpointError",
    "ConfigError",
    "ConstantAlpha",
    "Critic",
    "CriticConfig",
    "Domain",
    "DomainError",
    "EnvSpec",
    "EstimatorConfig",
    "EvalConfig",
    "GuidanceError",
    "GuidedConfig",
    "GuidedEstimator",
    "GuidedMarlError",
    "HeuristicPolicy",
    "LearnerConfig",
    "LinearAlpha",
    "MultiAgentVecEnv",
    "PPOConfig",
    "Preset",
    "RunConfig",
    "SolverError",
    "SparseInfluence",
    "Step",
    "StudyError",
    "Trainer",
    "TrainingError",
    "available_domains",
    "get_domain",
    "guidance_weights",
    "register_critic",
    "register_domain",
    "register_estimator",
    "register_preset",
]
