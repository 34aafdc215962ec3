"""The run's device: ``cpu`` (default) or ``cuda`` / ``cuda:K``, checked before any work starts.

A run lives on one device: the domain builds its environments and analytical model there,
and the trainer keeps its networks, rollout buffers and advantages there. A domain says which
device types it supports (:attr:`guidedmarl.Domain.devices`); asking another one is a
:class:`~guidedmarl.errors.ConfigError` rather than a slow, silent copy at every step. The
convex-layer references (cvxpylayers) are solved in float64 on the CPU whatever the device
and returned on the input's device.
"""

from __future__ import annotations

import re

import torch

from guidedmarl.errors import ConfigError

DEVICE_PATTERN = r"^(cpu|cuda(:\d+)?)$"
"""What ``device`` may be set to."""


def resolve_device(name: str, supported: tuple[str, ...] = ("cpu", "cuda"), who: str = "") -> torch.device:
    """``name`` as a ``torch.device``, after checking that this machine and ``who`` can use it.

    Args:
        name: ``cpu``, ``cuda`` or ``cuda:K``.
        supported: device types the consumer (a domain) can run on.
        who: the consumer's name, for the message (e.g. "domain 'power'").

    Raises:
        ConfigError: a malformed name, no CUDA device on this machine, an index beyond the
            devices present, or a device type ``who`` does not support.
    """
    if not re.match(DEVICE_PATTERN, name):
        raise ConfigError(f"device: '{name}' is not one of cpu, cuda, cuda:K")
    device = torch.device(name)
    if device.type not in supported:
        raise ConfigError(
            f"device: {who or 'this run'} runs on {', '.join(supported)} only, not '{name}'; use --device cpu"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device: '{name}' asked, but torch finds no CUDA device on this machine "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device: '{name}' asked, but this machine has {count} CUDA device(s) (cuda:0 .. cuda:{count - 1})")
    return device
