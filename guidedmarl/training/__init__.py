"""PPO training: networks, value normalisation and the MAPPO / IPPO / DG-PG trainer."""

from guidedmarl.training.trainer import Rollout, Trainer, TrainingError, compute_gae

__all__ = ["Rollout", "Trainer", "TrainingError", "compute_gae"]
