"""`GuidedEstimator`: mixes the PPO advantage with the analytical guidance weight.

    A_DG = (1 - alpha) * A_hat - alpha * g_hat

How g is scaled against A (a choice the paper leaves open; ours):

* ``A_hat``: the PPO advantage standardised over the active samples of the rollout batch,
  (A - mean) / std, exactly as a plain MAPPO/IPPO run standardises it. With alpha = 0 the
  mixed advantage is *bit-for-bit* A_hat, so DG-PG with alpha = 0 is MAPPO.
* ``g_hat``: the guidance weight centred and scaled the same way, (g - mean) / std. Both
  terms then have unit spread, so alpha is a real mixing fraction whatever the units of x.
  Subtracting a constant from g leaves E[g grad log pi] unchanged (E[grad log pi] = 0), so
  centring keeps the guidance estimator unbiased and removes its mean-shift variance;
  the common positive scale only rescales the step, like advantage standardisation does.

Other choices are available through ``guidance_scaling`` ("scale": divide by std without
centring; "none": raw g, for studies where units matter). The minus sign makes agents move
*down* the guidance objective G = E[1/2 ||x - x_ref||^2]: a positive g_i says agent i's
action pushed the system away from the reference.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from guidedmarl.guidance.schedules import AlphaSchedule, checked_alpha

Scaling = Literal["standardize", "scale", "none"]


def masked_standardize(values: Tensor, mask: Tensor, center: bool = True, eps: float = 1e-8) -> Tensor:
    """(values - mean) / std over entries where ``mask`` is true; masked-out entries become 0.

    Uses the unbiased std (as ``torch.std``), so a plain PPO run that standardises its
    advantage over all samples gives the same numbers when every sample is active.
    """
    m = mask.to(values.dtype)
    count = m.sum().clamp_min(1.0)
    mean = (values * m).sum() / count
    var = ((values - mean).square() * m).sum() / (count - 1.0).clamp_min(1.0)
    shifted = values - mean if center else values
    return shifted / (var.sqrt() + eps) * m


class GuidedEstimator:
    """Builds the per-agent advantage fed to the PPO clipped surrogate.

    Args:
        schedule: alpha as a function of training progress in [0, 1] (see ``schedules``).
        guidance_scaling: how g is put on the scale of the standardised advantage.
        enabled: False gives the plain standardised advantage (MAPPO / IPPO); the
            guidance tensor is then ignored.
        exact_difference: ask the model for g_i - 1/2 ||z_i||^2 (see
            :meth:`~guidedmarl.analytical.AnalyticalModel.guidance`).
    """

    def __init__(
        self,
        schedule: AlphaSchedule,
        guidance_scaling: Scaling = "standardize",
        enabled: bool = True,
        exact_difference: bool = False,
    ) -> None:
        if guidance_scaling not in ("standardize", "scale", "none"):
            raise ValueError(f"guidance_scaling must be 'standardize', 'scale' or 'none', got {guidance_scaling!r}")
        self.schedule = schedule
        self.guidance_scaling = guidance_scaling
        self.enabled = enabled
        self.exact_difference = exact_difference

    def alpha(self, progress: float) -> float:
        """alpha at this point of training (0 when guidance is disabled)."""
        return checked_alpha(self.schedule, progress) if self.enabled else 0.0

    def scale_guidance(self, guidance: Tensor, mask: Tensor) -> Tensor:
        """g_hat: the guidance weights put on the advantage's scale (see module docstring)."""
        if self.guidance_scaling == "none":
            return guidance * mask.to(guidance.dtype)
        return masked_standardize(guidance, mask, center=self.guidance_scaling == "standardize")

    def mixed_advantage(self, advantage: Tensor, guidance: Tensor | None, mask: Tensor, progress: float) -> Tensor:
        """A_DG for every sample, same shape as ``advantage`` (e.g. ``[T, E, N]``).

        Args:
            advantage: raw GAE advantages, broadcast per agent.
            guidance: raw guidance weights g (same shape) or None when guidance is off.
            mask: bool, samples where the agent acted (others get advantage 0).
            progress: training progress in [0, 1] for the alpha schedule.
        """
        a_hat = masked_standardize(advantage, mask)
        alpha = self.alpha(progress)
        if not self.enabled or alpha == 0.0:
            return a_hat
        if guidance is None:
            raise ValueError("guidance is enabled but no guidance weights were collected")
        if guidance.shape != advantage.shape:
            raise ValueError(f"guidance shape {tuple(guidance.shape)} != advantage shape {tuple(advantage.shape)}")
        return (1.0 - alpha) * a_hat - alpha * self.scale_guidance(guidance, mask)
