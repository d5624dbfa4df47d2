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

Headroom (``rooms``, from each node's heartbeat): a node whose measured CPU or memory use is
above its threshold (``cluster.max_cpu_usage``/``max_memory_usage``) is *overloaded* and takes
no new process (what it runs stays); and every process's ``limits`` (``needs``: cpu percent,
memory MB) count against the node it is placed on — the limits of one node's processes add
up to at most its ``cpu``/``memory_mbytes`` budget, pins and running processes included (a
process whose limits no longer fit where it runs moves). When *every* node is overloaded a
process still goes to its best-ranked node with capacity and budget (an overloaded cluster
degrades rather than stops running things); a process whose limits fit no node is
unassigned.

Dependency affinity (``deps``, Core v17's rule for ``#id:`` inputs): a process whose input
reads another process's output (``#other:output=…``) runs on ``other``'s node, wherever that
is — it is placed as ``other`` is and moves when ``other`` moves (chains follow their root; a
cycle, or a reference to a process that does not exist, is placed normally). Followers do not
count against capacities or budgets: the group goes where its root goes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["BALANCE", "Headroom", "Need", "assign", "dependency_roots", "headroom", "rank", "score"]

#: a node takes at most this factor of the mean number of processes
BALANCE = 1.2


@dataclass(frozen=True)
class Headroom:
    """What a node can take: ``overloaded`` (measured use above its threshold: no new
    processes), and the budgets the processes' limits share (inf: no limit)."""

    overloaded: bool = False
    cpu: float = math.inf
    memory_mbytes: float = math.inf


@dataclass(frozen=True)
class Need:
    """A process's ``limits``: CPU percent of a machine and memory MB (0: none)."""

    cpu: float = 0.0
    memory_mbytes: float = 0.0


def headroom(resources: Mapping[str, object]) -> Headroom:
    """A node's :class:`Headroom` from the ``resources`` of its heartbeat document
    (``cpu_used``, ``memory_used_bytes``, ``memory_total_bytes``, ``max_cpu_usage``,
    ``max_memory_usage``; missing thresholds = no limit)."""
    def num(key: str) -> float:
        value = resources.get(key)
        return float(value) if isinstance(value, int | float) else 0.0
    max_cpu, max_mem = num("max_cpu_usage"), num("max_memory_usage")
    total = num("memory_total_bytes")
    used_mem = 100.0 * num("memory_used_bytes") / total if total > 0 else 0.0
    overloaded = (max_cpu > 0 and num("cpu_used") > max_cpu) or (
        max_mem > 0 and total > 0 and used_mem > max_mem)
    return Headroom(overloaded=overloaded,
                    cpu=max_cpu if max_cpu > 0 else math.inf,
                    memory_mbytes=total * max_mem / 100 / 2**20 if max_mem > 0 and total > 0
                    else math.inf)


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
           balance: float = BALANCE,
           rooms: Mapping[str, Headroom] | None = None,
           needs: Mapping[str, Need] | None = None,
           deps: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The node of every process (``deps``: process id -> the process its inputs reference,
    see the module docstring)."""
    ids = sorted(set(process_ids))
    roots = dependency_roots(ids, deps or {})
    placed = _assign([pid for pid in ids if roots[pid] == pid], nodes, pins=pins,
                     holders=holders, balance=balance, rooms=rooms, needs=needs)
    return {pid: placed[roots[pid]] for pid in ids}


def dependency_roots(process_ids: Iterable[str], deps: Mapping[str, str]) -> dict[str, str]:
    """The process each of ``process_ids`` is placed with: itself, or the end of its chain of
    references (``deps``) within ``process_ids``; a reference to an unknown process ends the
    chain, and a process whose chain runs into a cycle is its own root."""
    ids = set(process_ids)
    roots: dict[str, str] = {}
    for pid in ids:
        seen = [pid]
        cur = pid
        while True:
            nxt = deps.get(cur)
            if nxt is None or nxt not in ids or nxt == cur:
                break
            if nxt in seen:  # a cycle: nobody in it follows anybody
                cur = pid
                break
            seen.append(nxt)
            cur = nxt
        roots[pid] = cur
    return roots


def _assign(process_ids: Iterable[str], nodes: Mapping[str, int], *,
            pins: Mapping[str, str] | None = None,
            holders: Mapping[str, str] | None = None,
            balance: float = BALANCE,
            rooms: Mapping[str, Headroom] | None = None,
            needs: Mapping[str, Need] | None = None) -> dict[str, str | None]:
    """:func:`assign` without dependencies: The node of every process. ``nodes`` maps each healthy node to its own limit of
    processes (0 = none); ``pins`` maps process ids to a preferred node; ``holders`` maps
    process ids to the node running them now (sticky: kept there while that node is within
    its capacity, those ranking it highest first); ``rooms`` the nodes' headroom and
    ``needs`` the processes' limits (see the module docstring; missing = no limit)."""
    ids = sorted(set(process_ids))
    out: dict[str, str | None] = {}
    if not nodes:
        return dict.fromkeys(ids)
    rooms = rooms or {}
    needs = needs or {}
    free = Headroom()
    pins = pins or {}
    holders = holders or {}
    capacity = _capacities(len(ids), nodes, balance)
    taking = {n: lim for n, lim in nodes.items() if not rooms.get(n, free).overloaded}
    if taking and len(taking) < len(nodes):  # the others share what overloaded nodes keep
        kept = sum(1 for pid in ids if holders.get(pid) in nodes
                   and rooms.get(holders[pid], free).overloaded)
        capacity.update(_capacities(len(ids) - kept, taking, balance))
    load = dict.fromkeys(nodes, 0)
    cpu = dict.fromkeys(nodes, 0.0)
    mem = dict.fromkeys(nodes, 0.0)

    def fits(node: str, pid: str, new: bool) -> bool:
        room = rooms.get(node, free)
        need = needs.get(pid)
        if load[node] >= capacity[node] or (new and room.overloaded):
            return False
        return need is None or (cpu[node] + need.cpu <= room.cpu
                                and mem[node] + need.memory_mbytes <= room.memory_mbytes)

    def take(node: str, pid: str) -> None:
        out[pid] = node
        load[node] += 1
        need = needs.get(pid)
        if need is not None:
            cpu[node] += need.cpu
            mem[node] += need.memory_mbytes

    for pid in ids:  # pins first
        pinned = pins.get(pid)
        if pinned in capacity and fits(pinned, pid, holders.get(pid) != pinned):
            take(pinned, pid)
    # then what already runs stays where it is, as far as the capacities allow
    sticky = [pid for pid in ids if pid not in out and holders.get(pid) in capacity]
    sticky.sort(key=lambda pid: (rank(pid, nodes).index(holders[pid]), pid))
    for pid in sticky:
        node = holders[pid]
        if fits(node, pid, False):
            take(node, pid)
    for pid in ids:
        if pid in out:
            continue
        ranked = rank(pid, nodes)
        choice = next((n for n in ranked if fits(n, pid, True)), None)
        if choice is None and all(rooms.get(n, free).overloaded for n in nodes):
            choice = next((n for n in ranked if fits(n, pid, False)), None)
        if choice is None:
            out[pid] = None
        else:
            take(choice, pid)
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
