"""PPO training: networks, critics, the rollout loop and the trainer."""

from guidedmarl.errors import TrainingError
from guidedmarl.training.critics import CRITICS, Critic, CriticConfig, register_critic
from guidedmarl.training.rollout import Action, StepView, Trajectory, rollout
from guidedmarl.training.trainer import Rollout, Trainer, compute_gae

__all__ = [
    "CRITICS",
    "Action",
    "Critic",
    "CriticConfig",
    "Rollout",
    "StepView",
    "Trainer",
    "TrainingError",
    "Trajectory",
    "compute_gae",
    "register_critic",
    "rollout",
]
