"""Every random generator of a run, captured and restored, so a resumed run continues bit for bit.

A run draws from Python's ``random``, NumPy's global generator, torch's global generator
(CPU, and CUDA when used) and from ``torch.Generator`` objects owned by the trainer
(minibatch shuffling) and by whatever the estimator holds (e.g. a noisy surrogate model's
generator, or one of a plug-in). :func:`generators_of` finds the owned generators by
walking the objects' attributes, so a plug-in's generator is saved without registering it.

The captured state holds only tensors and plain Python types, so a checkpoint holding it
loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor


def generators_of(root: Any, prefix: str = "", depth: int = 6) -> dict[str, torch.Generator]:
    """Every ``torch.Generator`` reachable from ``root`` through attributes, lists and dicts.

    Keys are attribute paths (``estimator.model._generator``); tensors and parameters are
    not entered, each object is visited once, and the walk stops ``depth`` levels down.
    """
    found: dict[str, torch.Generator] = {}
    seen: set[int] = set()

    def walk(obj: Any, path: str, level: int) -> None:
        if id(obj) in seen or level > depth or isinstance(obj, (Tensor, str, bytes, int, float, type)):
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Generator):
            found[path] = obj
            return
        if isinstance(obj, dict):
            items = [(str(k), v) for k, v in obj.items()]
        elif isinstance(obj, (list, tuple)):
            items = [(str(i), v) for i, v in enumerate(obj)]
        elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] not in ("builtins", "numpy"):
            items = list(vars(obj).items())
        else:
            return
        for name, value in items:
            walk(value, f"{path}.{name}" if path else name, level + 1)

    walk(root, prefix, 0)
    return found


def capture(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """The state of the global generators and of ``generators``: tensors and plain types only."""
    version, mt, gauss = random.getstate()
    legacy = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "bit_generator": legacy["bit_generator"],
            "key": torch.from_numpy(legacy["state"]["key"].astype(np.int64)),
            "pos": int(legacy["state"]["pos"]),
            "has_gauss": int(legacy["has_gauss"]),
            "gauss": float(legacy["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "generators": {name: gen.get_state() for name, gen in generators.items()},
    }
    return state


def restore(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Put every generator back in the state :func:`capture` recorded.

    Raises ``KeyError`` naming a generator the state lacks (a checkpoint of another setup).
    """
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npy["bit_generator"],
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": int(npy["pos"])},
            "has_gauss": int(npy["has_gauss"]),
            "gauss": float(npy["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state["generators"]
    missing = sorted(set(generators) - set(saved))
    if missing:
        raise KeyError(f"no saved state for the generator(s) {', '.join(missing)}")
    for name, gen in generators.items():
        gen.set_state(saved[name])
