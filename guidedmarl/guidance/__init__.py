"""Guidance: alpha schedules and the mixing of PPO advantages with g."""

from guidedmarl.guidance.estimator import GuidedEstimator, masked_standardize
from guidedmarl.guidance.schedules import AlphaSchedule, ConstantAlpha, LinearAlpha, ScheduleConfig, checked_alpha

__all__ = [
    "AlphaSchedule",
    "ConstantAlpha",
    "GuidedEstimator",
    "LinearAlpha",
    "ScheduleConfig",
    "checked_alpha",
    "masked_standardize",
]
