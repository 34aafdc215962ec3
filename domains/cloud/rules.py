"""Every cloud heuristic by name (the classic rules of :mod:`.heuristics`, the decentralised
ones of :mod:`.decentralised`), for configuration files, command lines and the domain."""

from __future__ import annotations

from .decentralised import HeadroomRandom, HeadroomRandomAbsolute, LeastLoadedFit, PowerOfD
from .heuristics import BestFit, Heuristic, LeastLoaded, RandomDispatch, RoundRobin, SimultaneousBestFit

HEURISTICS: dict[str, type[Heuristic]] = {
    "random": RandomDispatch,
    "round_robin": RoundRobin,
    "least_loaded": LeastLoaded,
    "best_fit": BestFit,
    "best_fit_simultaneous": SimultaneousBestFit,
    "headroom_random": HeadroomRandom,
    "headroom_random_absolute": HeadroomRandomAbsolute,
    "power_of_two": PowerOfD,
    "least_loaded_fit": LeastLoadedFit,
}
"""Heuristics by name, for configuration files and command lines."""
