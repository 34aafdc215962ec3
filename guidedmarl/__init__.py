"""guidedmarl: Descent-Guided Policy Gradient for cooperative multi-agent RL.

Data flow: environment (:mod:`guidedmarl.env`) -> analytical model
(:mod:`guidedmarl.analytical`) -> guidance weights and advantage estimators
(:mod:`guidedmarl.guidance`) -> trainer (:mod:`guidedmarl.training`).
:mod:`guidedmarl.domain` plugs problems in, :mod:`guidedmarl.learners` names the learners
(critic + estimator), and :func:`guidedmarl.experiment.run_experiment` ties one experiment
together (:func:`load_run` and :func:`evaluate` read and score its folder afterwards). :mod:`guidedmarl.testing` checks a domain against the contract.

The names below are imported on first use (PEP 562), so ``import guidedmarl`` and the
command line's ``--help`` stay fast, and :mod:`guidedmarl.errors` can be used without torch.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Idle OpenMP threads sleep instead of spinning (guidedmarl.runtime says why); a value the
# user set wins. OpenMP reads it once, when torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "AdvantageEstimator": "guidedmarl.guidance.estimator",
    "AnalyticalModel": "guidedmarl.analytical.model",
    "CheckpointError": "guidedmarl.errors",
    "ConfigError": "guidedmarl.errors",
    "ConstantAlpha": "guidedmarl.guidance.schedules",
    "Critic": "guidedmarl.training.critics",
    "CriticConfig": "guidedmarl.training.critics",
    "Domain": "guidedmarl.domain",
    "DomainError": "guidedmarl.errors",
    "EnvSpec": "guidedmarl.env",
    "EstimatorConfig": "guidedmarl.guidance.estimator",
    "EvalConfig": "guidedmarl.config",
    "GuidanceError": "guidedmarl.errors",
    "GuidedConfig": "guidedmarl.guidance.estimator",
    "GuidedEstimator": "guidedmarl.guidance.estimator",
    "GuidedMarlError": "guidedmarl.errors",
    "HeuristicPolicy": "guidedmarl.domain",
    "LearnerConfig": "guidedmarl.learners",
    "LinearAlpha": "guidedmarl.guidance.schedules",
    "LinearOutputModel": "guidedmarl.analytical.linear_outputs",
    "MultiAgentVecEnv": "guidedmarl.env",
    "PPOConfig": "guidedmarl.config",
    "Preset": "guidedmarl.learners",
    "RunConfig": "guidedmarl.config",
    "SolverError": "guidedmarl.errors",
    "SparseInfluence": "guidedmarl.analytical.model",
    "Step": "guidedmarl.env",
    "StudyError": "guidedmarl.errors",
    "Trainer": "guidedmarl.training.trainer",
    "TrainingError": "guidedmarl.errors",
    "available_domains": "guidedmarl.domain",
    "get_domain": "guidedmarl.domain",
    "guidance_weights": "guidedmarl.guidance.weights",
    "register_critic": "guidedmarl.training.critics",
    "register_domain": "guidedmarl.domain",
    "register_estimator": "guidedmarl.guidance.estimator",
    "register_preset": "guidedmarl.learners",
    "run_experiment": "guidedmarl.experiment",
    "Run": "guidedmarl.runs",
    "evaluate": "guidedmarl.runs",
    "load_run": "guidedmarl.runs",
    "Logger": "guidedmarl.loggers",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'guidedmarl' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from guidedmarl.analytical.linear_outputs import LinearOutputModel
    from guidedmarl.analytical.model import AnalyticalModel, SparseInfluence
    from guidedmarl.config import EvalConfig, PPOConfig, RunConfig
    from guidedmarl.domain import Domain, HeuristicPolicy, available_domains, get_domain, register_domain
    from guidedmarl.env import EnvSpec, MultiAgentVecEnv, Step
    from guidedmarl.errors import CheckpointError, ConfigError, DomainError, GuidanceError, GuidedMarlError, SolverError, StudyError, TrainingError
    from guidedmarl.experiment import run_experiment
    from guidedmarl.loggers import Logger
    from guidedmarl.runs import Run, evaluate, load_run
    from guidedmarl.guidance.estimator import AdvantageEstimator, EstimatorConfig, GuidedConfig, GuidedEstimator, register_estimator
    from guidedmarl.guidance.schedules import ConstantAlpha, LinearAlpha
    from guidedmarl.guidance.weights import guidance_weights
    from guidedmarl.learners import LearnerConfig, Preset, register_preset
    from guidedmarl.training.critics import Critic, CriticConfig, register_critic
    from guidedmarl.training.trainer import Trainer
