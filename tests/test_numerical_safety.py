"""A NaN or an infinity anywhere in training stops the run with a message naming where and when.

Each test injects a NaN at one place during training episode 2 (of 3) and checks that:
the error names the place and the episode; the folder says the run failed; the resume
checkpoint still holds episode 1, complete; the weights are finite (no NaN reached an
optimiser step). One test then resumes without the fault and gets the numbers of a run that
never had it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from guidedmarl import checkpoint as ckpt
from guidedmarl.config import RunConfig
from guidedmarl.errors import GuidanceError, GuidedMarlError, TrainingError
from guidedmarl.experiment import run_experiment
from guidedmarl.rundir import CHECKPOINT, read_summary

EPISODE_WITH_THE_FAULT = 2


def _config(tmp_path: Path) -> RunConfig:
    return RunConfig(domain="cloud", agents=6, episodes=3, threads=1, out=tmp_path / "run",
                     domain_config={"horizon": 5, "warmup": 2},
                     eval={"test_scenarios": 2, "validation_scenarios": 2, "heuristics": False})  # fmt: skip


class Fault:
    """Turns on after the first training episode: ``active`` is read by the patched functions."""

    def __init__(self) -> None:
        self.active = False

    def on_episode(self, episode: int, row: dict[str, float]) -> None:
        self.active = episode + 1 == EPISODE_WITH_THE_FAULT - 1

    def nan_like(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, float("nan")) if self.active else t


def _inject(monkeypatch: pytest.MonkeyPatch, place: str, fault: Fault) -> None:
    """Patch one place of the pipeline so that it produces NaN while ``fault.active``."""
    from guidedmarl.guidance import estimator
    from guidedmarl.training import critics, networks, trainer
    from guidedmarl_domains.cloud.model import CloudModel

    def wrap(owner: Any, name: str, transform: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, **k: transform(original(*a, **k)))

    if place == "reference":
        wrap(CloudModel, "reference_state", fault.nan_like)
    elif place == "guidance":
        wrap(estimator, "guidance_weights", fault.nan_like)
    elif place == "advantage":
        wrap(trainer, "compute_gae", fault.nan_like)
    elif place == "critic":
        wrap(critics.CentralCritic, "forward", fault.nan_like)
    elif place == "policy":
        original = networks.Actor.distribution

        def poisoned(self: Any, obs: torch.Tensor, *args: Any) -> Any:
            return original(self, fault.nan_like(obs) if fault.active else obs, *args)

        monkeypatch.setattr(networks.Actor, "distribution", poisoned)
    elif place == "loss":
        original_samples = trainer.Trainer._policy_samples

        def samples(self: Any, mb: dict[str, torch.Tensor]) -> Any:
            obs, actions, old_logp, adv, weight = original_samples(self, mb)
            return obs, actions, fault.nan_like(old_logp), adv, weight

        monkeypatch.setattr(trainer.Trainer, "_policy_samples", samples)
    elif place == "gradient":
        real = torch.nn.utils.clip_grad_norm_

        def clip(params: Any, max_norm: float, *args: Any, **kwargs: Any) -> torch.Tensor:
            params = list(params)
            if fault.active:
                next(p for p in params if p.grad is not None).grad.fill_(float("nan"))
            return real(params, max_norm, *args, **kwargs)

        monkeypatch.setattr(trainer.nn.utils, "clip_grad_norm_", clip)
    else:
        raise AssertionError(place)


PLACES = {
    "reference": (GuidanceError, "reference_state returned .* NaN or infinite"),
    "guidance": (GuidanceError, "guidance weights g hold .* NaN"),
    "advantage": (TrainingError, "the GAE advantages hold .* NaN"),
    "critic": (TrainingError, "the critic's values of the rollout hold .* NaN"),
    "policy": (TrainingError, "the policy network output .* NaN"),
    "loss": (TrainingError, "PPO loss became nan"),
    "gradient": (TrainingError, "the gradient norm is nan .* the optimiser step was not taken"),
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_nan_stops_the_run_naming_the_place_and_the_episode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, place: str
) -> None:
    fault = Fault()
    _inject(monkeypatch, place, fault)
    cfg = _config(tmp_path)
    kind, message = PLACES[place]
    with pytest.raises(kind, match=f"training episode {EPISODE_WITH_THE_FAULT}: .*{message}"):
        run_experiment(cfg, on_episode=fault.on_episode)
    summary = read_summary(cfg.out)
    assert summary is not None and summary["status"] == "failed"
    assert summary["episodes_done"] == EPISODE_WITH_THE_FAULT - 1 and f"episode {EPISODE_WITH_THE_FAULT}" in summary["error"]
    saved = ckpt.load_resume(cfg.out / CHECKPOINT)
    assert saved["loop"]["episode"] == EPISODE_WITH_THE_FAULT - 1  # the last complete episode, intact
    weights = [v for part in ("actor", "critic") for v in saved["trainer"][part].values()]
    assert all(bool(torch.isfinite(w).all()) for w in weights)


def test_after_a_transient_nan_the_folder_resumes_to_the_numbers_of_a_clean_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = run_experiment(_config(tmp_path / "clean"))
    fault = Fault()
    with monkeypatch.context() as patch:
        _inject(patch, "reference", fault)
        with pytest.raises(GuidedMarlError):
            run_experiment(_config(tmp_path), on_episode=fault.on_episode)
    resumed = run_experiment(_config(tmp_path), resume=True)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]  # noqa: E731
    assert strip(resumed.metrics) == strip(clean.metrics)
    assert resumed.final_test_reward == clean.final_test_reward
