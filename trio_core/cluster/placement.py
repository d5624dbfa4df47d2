"""Which node runs which process: rendezvous (highest random weight) hashing with bounded
loads, sans-IO.

Every node computes the same :func:`assign` from the same inputs (the process ids and the
healthy nodes read from Redis), so nobody coordinates placement; the leases (``lease.py``)
make a disagreement during a change harmless. ``rank`` orders the nodes for one process by a
hash of (node, process): removing a node moves only the processes it ranked first, adding one
moves only those it now ranks first. ``assign`` walks the processes in id order and gives each
to its best-ranked node that is still below its capacity: ``ceil(balance * processes / nodes)``
(so max/min per node stays within the balance, 1.2 by default: at most 2 x for any count), or
the node's own ``max_processes`` when that is smaller (the others then share the rest). A pin (``PUT /api/v3/cluster/reallocation``)
puts a process on a healthy node first, within capacity. A running process stays on its node
while that node is within its capacity (``holders``): a node joining takes only what the others
hold beyond their new capacity, the processes ranking it highest first. A process no node can
take (every node full) is unassigned (None).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

__all__ = ["BALANCE", "assign", "rank", "score"]

#: a node takes at most this factor of the mean number of processes
BALANCE = 1.2


def score(process_id: str, node_id: str) -> int:
    """The rendezvous weight of ``node_id`` for ``process_id`` (64 bits of BLAKE2b)."""
    digest = hashlib.blake2b(f"{node_id}\0{process_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(process_id: str, nodes: Iterable[str]) -> list[str]:
    """``nodes`` best first for ``process_id`` (ties, practically impossible, by id)."""
    return sorted(nodes, key=lambda node: (-score(process_id, node), node))


def assign(process_ids: Iterable[str], nodes: Mapping[str, int], *,
           pins: Mapping[str, str] | None = None,
           holders: Mapping[str, str] | None = None,
           balance: float = BALANCE) -> dict[str, str | None]:
    """The node of every process. ``nodes`` maps each healthy node to its own limit of
    processes (0 = none); ``pins`` maps process ids to a preferred node; ``holders`` maps
    process ids to the node running them now (sticky: kept there while that node is within
    its capacity, those ranking it highest first)."""
    ids = sorted(set(process_ids))
    out: dict[str, str | None] = {}
    if not nodes:
        return dict.fromkeys(ids)
    capacity = _capacities(len(ids), nodes, balance)
    load = dict.fromkeys(nodes, 0)
    pins = pins or {}
    holders = holders or {}
    for pid in ids:  # pins first
        pinned = pins.get(pid)
        if pinned in capacity and load[pinned] < capacity[pinned]:
            out[pid] = pinned
            load[pinned] += 1
    # then what already runs stays where it is, as far as the capacities allow
    sticky = [pid for pid in ids if pid not in out and holders.get(pid) in capacity]
    sticky.sort(key=lambda pid: (rank(pid, nodes).index(holders[pid]), pid))
    for pid in sticky:
        node = holders[pid]
        if load[node] < capacity[node]:
            out[pid] = node
            load[node] += 1
    for pid in ids:
        if pid in out:
            continue
        choice = None
        for node in rank(pid, nodes):
            if load[node] < capacity[node]:
                choice = node
                break
        if choice is not None:
            load[choice] += 1
        out[pid] = choice
    return {pid: out[pid] for pid in ids}


def _capacities(count: int, nodes: Mapping[str, int], balance: float) -> dict[str, int]:
    """Each node's share: nodes whose own limit is below the fair bound take their limit, the
    others share what is left (bound recomputed over them)."""
    capacity: dict[str, int] = {}
    rest = dict(nodes)
    remaining = count
    while rest:
        bound = max(1, math.ceil(balance * remaining / len(rest)))
        limited = {n: lim for n, lim in rest.items() if 0 < lim < bound}
        if not limited:
            capacity.update(dict.fromkeys(rest, bound))
            break
        for node, limit in limited.items():
            capacity[node] = limit
            remaining = max(0, remaining - limit)
            del rest[node]
    return capacity
