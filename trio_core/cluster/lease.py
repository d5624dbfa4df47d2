"""The leases this node holds, sans-IO: when a process may start, when it must be stopped.

A lease on a process is a Redis key with a TTL of ``lease_seconds`` (``trio-core:lease:<id>``
= ``<node>:<token>``; the token comes from the process's fencing counter, ``INCR``). Redis sets
the expiry when it *processes* a renewal, which is after this node *sent* it; so a lease is
certainly valid until ``sent + lease_seconds`` of the last renewal that succeeded
(:attr:`Lease.last_ok`). From that the book derives, on the caller's monotonic clock:

* :meth:`LeaseBook.may_start`: a start is allowed only before ``last_ok + stop_after``;
* :meth:`LeaseBook.must_stop`: past ``last_ok + stop_after`` (half the lease by default) the
  FFmpeg is stopped gracefully (self-fencing) — the lease could not be renewed;
* :meth:`LeaseBook.must_kill`: past ``last_ok + kill_after`` (0.8 of the lease) a process that
  is still running gets SIGKILL, so it is gone before anybody else can take the lease.

Nothing here does I/O or looks at a clock: ``now`` is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Lease", "LeaseBook"]


@dataclass
class Lease:
    token: int  # the fencing counter's value when this node acquired the lease
    last_ok: float  # when the last successful acquisition/renewal was *sent*
    stopping: bool = False  # self-fencing began


class LeaseBook:
    """The leases held by this node, keyed by process id."""

    def __init__(self, lease_seconds: float, *, stop_fraction: float = 0.5,
                 kill_fraction: float = 0.8) -> None:
        if not 0 < stop_fraction < kill_fraction < 1:
            raise ValueError("expected 0 < stop_fraction < kill_fraction < 1")
        self.lease_seconds = lease_seconds
        self.stop_after = lease_seconds * stop_fraction
        self.kill_after = lease_seconds * kill_fraction
        self.held: dict[str, Lease] = {}

    def acquired(self, process_id: str, token: int, sent_at: float) -> None:
        self.held[process_id] = Lease(token, sent_at)

    def renewed(self, process_id: str, token: int, sent_at: float) -> None:
        """A renewal of ``token`` sent at ``sent_at`` succeeded (ignored for another token)."""
        lease = self.held.get(process_id)
        if lease is not None and lease.token == token and not lease.stopping:
            lease.last_ok = max(lease.last_ok, sent_at)

    def lost(self, process_id: str) -> Lease | None:
        return self.held.pop(process_id, None)

    def token(self, process_id: str) -> int | None:
        lease = self.held.get(process_id)
        return lease.token if lease is not None else None

    def may_start(self, process_id: str, now: float) -> bool:
        lease = self.held.get(process_id)
        return lease is not None and not lease.stopping and now < lease.last_ok + self.stop_after

    def must_stop(self, now: float) -> list[str]:
        """Leases past their stop point whose self-fencing has not begun (marks them)."""
        out = []
        for pid, lease in self.held.items():
            if not lease.stopping and now >= lease.last_ok + self.stop_after:
                lease.stopping = True
                out.append(pid)
        return out

    def must_kill(self, now: float) -> list[str]:
        return [pid for pid, lease in self.held.items() if now >= lease.last_ok + self.kill_after]

    def expires_in(self, process_id: str, now: float) -> float | None:
        lease = self.held.get(process_id)
        return None if lease is None else lease.last_ok + self.lease_seconds - now
