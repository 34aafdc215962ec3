"""Guidance: the one computation of the weights g, advantage estimators, alpha schedules."""

from guidedmarl.guidance.estimator import (
    ESTIMATORS,
    AdvantageEstimator,
    EstimatorConfig,
    GuidedConfig,
    GuidedEstimator,
    SharedReturnConfig,
    SharedReturnEstimator,
    StepInputs,
    masked_standardize,
    register_estimator,
)
from guidedmarl.guidance.schedules import AlphaSchedule, ConstantAlpha, LinearAlpha, ScheduleConfig, checked_alpha
from guidedmarl.guidance.weights import guidance_weights

__all__ = [
    "ESTIMATORS",
    "AdvantageEstimator",
    "AlphaSchedule",
    "ConstantAlpha",
    "EstimatorConfig",
    "GuidedConfig",
    "GuidedEstimator",
    "LinearAlpha",
    "ScheduleConfig",
    "SharedReturnConfig",
    "SharedReturnEstimator",
    "StepInputs",
    "checked_alpha",
    "guidance_weights",
    "masked_standardize",
    "register_estimator",
]
