"""Road networks in the TNTP format (Bar-Gera's Transportation Networks for Research).

A network is its links (tail, head, capacity, free-flow time, BPR coefficient b and power),
its zones and its origin-destination (OD) demand. Link travel time is BPR,

    t_l(v) = t0_l (1 + b_l (v / C_l) ^ p_l),

with v the link flow (vehicles per hour in the files), C_l the capacity and t0_l the
free-flow time (minutes). Nodes are numbered from 1 in the files and from 0 here. Zones are
nodes 1 .. Z; ``<FIRST THRU NODE>`` F says which nodes traffic may pass through: nodes below F
are zone centroids that routes may start or end at but never cross (Anaheim: F = 39, so its
38 zones are not through nodes; Sioux Falls and Braess: F = 1, every node is a through node).

The files ship with the package (``data/``, attribution in ``data/SOURCE.md``) and are read
from there at run time.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

NETWORKS = {"braess": "Braess", "siouxfalls": "SiouxFalls", "anaheim": "Anaheim"}
"""Network names of ``domain_config.network`` -> file prefix in ``data/``."""


class NetworkError(ValueError):
    """A network name that is not shipped, or a TNTP file that cannot be read."""


@dataclass(frozen=True)
class Network:
    """One road network with its base OD demand (arrays in link order of the ``_net`` file).

    Attributes:
        name: network name (``braess``, ``siouxfalls``, ``anaheim``).
        num_nodes: nodes (zones included).
        num_zones: Z, zones are nodes 0 .. Z - 1.
        first_thru_node: F (1-based, as in the file); nodes 0 .. F - 2 are not through nodes.
        tail, head: ``[L]`` 0-based end nodes of every link.
        capacity: ``[L]`` C (veh/h). free_flow_time: ``[L]`` t0 (min). b, power: ``[L]`` BPR.
        origin, destination: ``[W]`` 0-based zones of the OD pairs with positive demand.
        demand: ``[W]`` base demand (veh/h) of those OD pairs.
        best_known_flow: ``[L]`` the file's best-known user-equilibrium flows, or None.
    """

    name: str
    num_nodes: int
    num_zones: int
    first_thru_node: int
    tail: IntArray
    head: IntArray
    capacity: FloatArray
    free_flow_time: FloatArray
    b: FloatArray
    power: FloatArray
    origin: IntArray
    destination: IntArray
    demand: FloatArray
    best_known_flow: FloatArray | None

    @property
    def num_links(self) -> int:
        return int(self.tail.shape[0])

    @property
    def num_od(self) -> int:
        return int(self.origin.shape[0])

    def travel_time(self, flow: FloatArray) -> FloatArray:
        """BPR link times t(v) (min) for flows ``[..., L]`` (veh/h)."""
        return self.free_flow_time * (1.0 + self.b * (flow / self.capacity) ** self.power)

    def total_travel_time(self, flow: FloatArray) -> FloatArray:
        """TSTT = sum_l v_l t_l(v_l) (veh min / h) for flows ``[..., L]``: ``[...]``."""
        return (flow * self.travel_time(flow)).sum(-1)


def _metadata(text: str, path: str) -> dict[str, str]:
    meta = dict(re.findall(r"<([A-Z ]+)>\s*([^\n<]*)", text.split("<END OF METADATA>")[0]))
    if "<END OF METADATA>" not in text:
        raise NetworkError(f"{path}: no <END OF METADATA> line")
    return {k.strip(): v.strip() for k, v in meta.items()}


def _data_lines(text: str) -> list[list[str]]:
    body = text.split("<END OF METADATA>", 1)[1]
    rows = []
    for line in body.splitlines():
        line = line.split("~", 1)[0].replace(";", " ").strip()
        if line:
            rows.append(line.split())
    return rows


def read_net(text: str, path: str = "net file") -> dict[str, object]:
    """Parse a TNTP ``_net`` file: header numbers and link columns (see :class:`Network`)."""
    meta = _metadata(text, path)
    try:
        nodes, zones = int(meta["NUMBER OF NODES"]), int(meta["NUMBER OF ZONES"])
        first_thru, links = int(meta["FIRST THRU NODE"]), int(meta["NUMBER OF LINKS"])
        table = np.array([[float(v) for v in row[:7]] for row in _data_lines(text)], dtype=np.float64)
    except (KeyError, ValueError) as exc:
        raise NetworkError(f"{path}: cannot read the TNTP header or link table ({exc})") from None
    if table.shape != (links, 7):
        raise NetworkError(f"{path}: <NUMBER OF LINKS> says {links} but the table has shape {table.shape}")
    tail, head = table[:, 0].astype(np.int64) - 1, table[:, 1].astype(np.int64) - 1
    if tail.min() < 0 or max(tail.max(), head.max()) >= nodes:
        raise NetworkError(f"{path}: link end nodes must lie in 1..{nodes}")
    if (table[:, 2] <= 0).any() or (table[:, 4] <= 0).any():
        raise NetworkError(f"{path}: every capacity and free-flow time must be positive")
    return {"num_nodes": nodes, "num_zones": zones, "first_thru_node": first_thru, "tail": tail, "head": head,
            "capacity": table[:, 2], "free_flow_time": table[:, 4], "b": table[:, 5], "power": table[:, 6]}


def read_trips(text: str, zones: int, path: str = "trips file") -> FloatArray:
    """Parse a TNTP ``_trips`` file into the ``[Z, Z]`` OD demand matrix (0-based zones)."""
    matrix = np.zeros((zones, zones))
    body = text.split("<END OF METADATA>", 1)[-1]
    for block in re.split(r"Origin", body)[1:]:
        head, _, rest = block.strip().partition("\n")
        origin = int(head.split()[0]) - 1
        for dest, value in re.findall(r"(\d+)\s*:\s*([-+0-9.eE]+)", rest):
            matrix[origin, int(dest) - 1] = float(value)
    if (matrix < 0).any():
        raise NetworkError(f"{path}: negative demand")
    return matrix


def read_flow(text: str, tail: IntArray, head: IntArray, path: str = "flow file") -> FloatArray:
    """Parse a TNTP ``_flow`` file (From, To, Volume, Cost) into ``[L]`` flows in link order."""
    index = {(int(t), int(h)): k for k, (t, h) in enumerate(zip(tail, head))}
    flow = np.full(len(tail), np.nan)
    for row in text.splitlines()[1:]:
        parts = row.split()
        if len(parts) >= 3:
            flow[index[(int(parts[0]) - 1, int(parts[1]) - 1)]] = float(parts[2])
    if np.isnan(flow).any():
        raise NetworkError(f"{path}: {int(np.isnan(flow).sum())} links have no flow")
    return flow


def data_file(name: str) -> Path:
    """Path of a file shipped in ``data/`` (inside the installed package)."""
    return Path(str(resources.files(__package__).joinpath("data").joinpath(name)))


@functools.cache
def load_network(name: str) -> Network:
    """The shipped network ``name`` (one of :data:`NETWORKS`), with its base demand."""
    if name not in NETWORKS:
        raise NetworkError(f"unknown network '{name}'; available: {', '.join(NETWORKS)}")
    prefix = NETWORKS[name]
    net_path = data_file(f"{prefix}_net.tntp")
    net = read_net(net_path.read_text(), str(net_path))
    zones = int(net["num_zones"])  # type: ignore[call-overload]
    trips_path = data_file(f"{prefix}_trips.tntp")
    matrix = read_trips(trips_path.read_text(), zones, str(trips_path))
    np.fill_diagonal(matrix, 0.0)  # intra-zonal trips use no link
    origin, destination = np.nonzero(matrix > 0)
    flow_path = data_file(f"{prefix}_flow.tntp")
    best = read_flow(flow_path.read_text(), net["tail"], net["head"], str(flow_path)) if flow_path.exists() else None  # type: ignore[arg-type]
    return Network(name=name, origin=origin.astype(np.int64), destination=destination.astype(np.int64),
                   demand=matrix[origin, destination], best_known_flow=best, **net)  # type: ignore[arg-type]
