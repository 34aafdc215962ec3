"""Heterogeneous server fleet and the agent-to-server candidate graph of the cloud domain.

The fleet mimics a public-cloud instance catalogue: three *families* that differ in their
memory-to-CPU ratio and three *sizes* that scale both resources together. CPU is counted in
vCPU and memory in GiB everywhere in the cloud domain.

==================  ==========  ===========================
family              index       GiB per vCPU
==================  ==========  ===========================
compute-optimised   0           2
general-purpose     1           4
memory-optimised    2           8
==================  ==========  ===========================

Sizes: ``2xlarge`` (8 vCPU), ``4xlarge`` (16 vCPU), ``8xlarge`` (32 vCPU). The smallest server
is therefore a compute-optimised 2xlarge with 8 vCPU and 16 GiB, twice the largest job the
workload generator emits (4 vCPU, 8 GiB), so every job fits an empty server of any kind.

Each dispatcher agent only sees a small *zone* of K candidate servers
(:func:`make_candidate_sets`); zones overlap at random so that load can spread through the
whole fleet via the bipartite agent-server graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

FAMILY_NAMES: tuple[str, ...] = ("compute-optimised", "general-purpose", "memory-optimised")
"""Human-readable family names, indexed by ``Fleet.family``."""

FAMILY_GIB_PER_VCPU: tuple[float, ...] = (2.0, 4.0, 8.0)
"""Memory per vCPU (GiB / vCPU) of each family."""

SIZE_NAMES: tuple[str, ...] = ("2xlarge", "4xlarge", "8xlarge")
"""Human-readable size names, indexed by ``Fleet.size``."""

SIZE_VCPU: tuple[float, ...] = (8.0, 16.0, 32.0)
"""vCPU count of each size: hosts several times larger than the largest job (4 vCPU), as
for containers on cloud VMs, so that packing is one concern among others, not the only one."""

DEFAULT_FAMILY_MIX: tuple[float, ...] = (0.3, 0.4, 0.3)
"""Default fraction of servers per family (compute, general, memory)."""

DEFAULT_SIZE_MIX: tuple[float, ...] = (0.5, 0.35, 0.15)
"""Default fraction of servers per size (2xlarge, 4xlarge, 8xlarge)."""

MIN_SERVER_CPU: float = min(SIZE_VCPU)
"""vCPU of the smallest server (8)."""

MIN_SERVER_MEM: float = min(SIZE_VCPU) * min(FAMILY_GIB_PER_VCPU)
"""GiB of the smallest server (16)."""


@dataclass
class Fleet:
    """M servers with their capacities.

    Attributes:
        cpu: ``[M]`` float32, vCPU capacity of each server.
        mem: ``[M]`` float32, memory capacity of each server in GiB.
        family: ``[M]`` int64 family index (0 compute, 1 general, 2 memory).
        size: ``[M]`` int64 size index (0 2xlarge, 1 4xlarge, 2 8xlarge).
    """

    cpu: Tensor
    mem: Tensor
    family: Tensor
    size: Tensor

    @property
    def num_servers(self) -> int:
        """M, the number of servers."""
        return int(self.cpu.shape[0])

    @property
    def total_cpu(self) -> float:
        """Total vCPU of the fleet."""
        return float(self.cpu.sum())

    @property
    def total_mem(self) -> float:
        """Total memory of the fleet in GiB."""
        return float(self.mem.sum())

    def to(self, device: torch.device | str) -> Fleet:
        """Return a copy of the fleet on ``device``."""
        return Fleet(
            cpu=self.cpu.to(device),
            mem=self.mem.to(device),
            family=self.family.to(device),
            size=self.size.to(device),
        )

    def describe(self) -> str:
        """Multi-line summary: servers per family and size, and the total capacity."""
        counts = torch.zeros(len(FAMILY_NAMES), len(SIZE_NAMES), dtype=torch.long)
        flat = (self.family.cpu() * len(SIZE_NAMES) + self.size.cpu()).long()
        counts.view(-1).index_add_(0, flat, torch.ones_like(flat))
        lines = [
            f"Fleet of {self.num_servers} servers: {self.total_cpu:g} vCPU, "
            f"{self.total_mem:g} GiB"
        ]
        for f, fname in enumerate(FAMILY_NAMES):
            per_size = ", ".join(
                f"{sname} {int(counts[f, s])}" for s, sname in enumerate(SIZE_NAMES)
            )
            lines.append(
                f"  {fname} ({FAMILY_GIB_PER_VCPU[f]:g} GiB/vCPU): "
                f"{int(counts[f].sum())} ({per_size})"
            )
        per_size_total = ", ".join(
            f"{sname} ({SIZE_VCPU[s]:g} vCPU) {int(counts[:, s].sum())}"
            for s, sname in enumerate(SIZE_NAMES)
        )
        lines.append(f"  sizes: {per_size_total}")
        return "\n".join(lines)


def _exact_counts(total: int, fractions: Sequence[float]) -> Tensor:
    """Split ``total`` items into integer counts proportional to ``fractions``.

    Largest-remainder rounding, so the counts sum to ``total`` and each deviates from its
    exact share by less than one item. Deterministic (ties go to the lower index).
    """
    frac = torch.tensor(fractions, dtype=torch.float64)
    if frac.ndim != 1 or (frac < 0).any() or float(frac.sum()) <= 0:
        raise ValueError(f"mix must be non-negative with a positive sum, got {fractions}")
    share = frac / frac.sum() * total
    counts = share.floor().long()
    missing = total - int(counts.sum())
    if missing > 0:
        remainder = share - counts.double()
        order = torch.argsort(-remainder, stable=True)
        counts[order[:missing]] += 1
    return counts


def make_fleet(
    num_servers: int,
    generator: torch.Generator,
    family_mix: Sequence[float] = DEFAULT_FAMILY_MIX,
    size_mix: Sequence[float] = DEFAULT_SIZE_MIX,
) -> Fleet:
    """Build a fleet of ``num_servers`` servers with the given family and size mixes.

    The number of servers of each family (and of each size) is the mix fraction times M,
    rounded by largest remainder, so small fleets still follow the mix closely; family and
    size labels are then shuffled independently with ``generator``, which makes the two
    attributes independent and the server order random.

    Args:
        num_servers: M >= 1.
        generator: CPU ``torch.Generator`` driving the shuffles (same state, same fleet).
        family_mix: fractions for (compute, general, memory); normalised.
        size_mix: fractions for (2xlarge, 4xlarge, 8xlarge); normalised.

    Returns:
        A :class:`Fleet` on the CPU.
    """
    if num_servers < 1:
        raise ValueError(f"num_servers must be >= 1, got {num_servers}")
    if len(family_mix) != len(FAMILY_NAMES) or len(size_mix) != len(SIZE_NAMES):
        raise ValueError("family_mix and size_mix must have 3 entries each")
    fam_counts = _exact_counts(num_servers, family_mix)
    size_counts = _exact_counts(num_servers, size_mix)
    family_sorted = torch.repeat_interleave(torch.arange(len(FAMILY_NAMES)), fam_counts)
    size_sorted = torch.repeat_interleave(torch.arange(len(SIZE_NAMES)), size_counts)
    family = family_sorted[torch.randperm(num_servers, generator=generator)]
    size = size_sorted[torch.randperm(num_servers, generator=generator)]
    cpu = torch.tensor(SIZE_VCPU, dtype=torch.float32)[size]
    mem = cpu * torch.tensor(FAMILY_GIB_PER_VCPU, dtype=torch.float32)[family]
    return Fleet(cpu=cpu, mem=mem, family=family, size=size)


def make_candidate_sets(
    num_agents: int, num_servers: int, k: int, generator: torch.Generator
) -> Tensor:
    """Give each agent K distinct candidate servers (its zone), in O(N*K) time and memory.

    Construction (all vectorised, nothing of size N x M is built):

    1. Servers are relabelled by a random permutation ``sigma`` and placed on a ring
       ``Z_M``; agent i's zone is ``sigma((s_i + o_i) mod M)`` for a start ``s_i`` and a row
       of K *distinct* offsets ``o_i`` in ``[0, M)``, so the K servers are distinct.
    2. Coverage: with ``g = ceil(M / N)`` (clipped to K) every row's first g offsets are
       ``0..g-1`` and the starts are ``s_i = g * pi(i) mod M`` for a random agent permutation
       ``pi``; the windows ``[s_i, s_i + g)`` tile the ring, so every server is a candidate
       of some agent whenever ``N * K >= M``.
    3. Random overlap: the remaining ``K - g`` offsets of each row are drawn independently
       per agent from ``[g, M)``: sort ``K - g`` i.i.d. uniform integers in
       ``[0, M - K]`` and add ``0, 1, ...`` to make them strictly increasing (a bijection
       between multisets and sets). Zones therefore intersect at random, which makes the
       bipartite agent-server graph an expander-like, well-connected graph. (Connectivity
       needs spare slots: with ``N * K`` close to M the coverage windows use up every slot
       and the zones nearly partition the fleet; at least ``N * K >= M + N - 1`` edges are
       needed for a connected graph.)

    Args:
        num_agents: N >= 1.
        num_servers: M >= 1.
        k: zone size; clipped to M.
        generator: CPU ``torch.Generator``.

    Returns:
        ``[N, min(k, M)]`` int64 server indices, distinct within each row.
    """
    if num_agents < 1 or num_servers < 1 or k < 1:
        raise ValueError(
            f"num_agents, num_servers and k must be >= 1, got {num_agents}, {num_servers}, {k}"
        )
    k = min(k, num_servers)
    g = min(k, math.ceil(num_servers / num_agents))
    m_extra = k - g
    sigma = torch.randperm(num_servers, generator=generator)
    pi = torch.randperm(num_agents, generator=generator)
    starts = (pi * g) % num_servers  # [N]
    base = torch.arange(g).expand(num_agents, g)  # [N, g]
    if m_extra > 0:
        hi = num_servers - k  # i.i.d. draws in [0, hi]
        draws = torch.randint(0, hi + 1, (num_agents, m_extra), generator=generator)
        draws, _ = torch.sort(draws, dim=1)
        extra = g + draws + torch.arange(m_extra)  # strictly increasing, in [g, M)
        offsets = torch.cat([base, extra], dim=1)
    else:
        offsets = base
    ring = (starts[:, None] + offsets) % num_servers
    return sigma[ring].contiguous()
