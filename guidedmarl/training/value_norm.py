"""Running standardisation of value targets (the "value normalisation" of MAPPO)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ValueNormalizer(nn.Module):
    """Tracks the mean and variance of returns seen so far (Chan et al. parallel update).

    The critic predicts standardised values; ``denormalize`` maps them back to reward
    units for GAE. Disabled, it is the identity.
    """

    def __init__(self, enabled: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.enabled = enabled
        self.eps = eps
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, values: Tensor) -> None:
        if not self.enabled:
            return
        x = values.detach().to(torch.float64).flatten()
        n = float(x.numel())
        if n == 0:
            return
        b_mean, b_var = x.mean(), x.var(unbiased=False)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * n / total
        self.var = (self.var * self.count + b_var * n + delta.square() * self.count * n / total) / total
        self.count = total

    def normalize(self, values: Tensor) -> Tensor:
        if not self.enabled:
            return values
        return ((values - self.mean) / (self.var.sqrt() + self.eps)).to(values.dtype)

    def denormalize(self, values: Tensor) -> Tensor:
        if not self.enabled:
            return values
        return (values * (self.var.sqrt() + self.eps) + self.mean).to(values.dtype)
