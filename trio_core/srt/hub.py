"""Who publishes and who subscribes to which SRT stream: the SRT adapter over the shared relay
policy, sans-IO.

A :class:`Hub` knows connections by socket id (ints), nothing about sockets themselves.
Rules (Core's ``srt/srt.go``, applied by :func:`relay.admit` over a :class:`relay.PathRegistry`):
one publisher per resource (a second gets ``CONFLICT``), any number of subscribers (a request
for a resource nobody publishes gets ``NOTFOUND``); when the publisher leaves, its subscribers
are closed too. Limits: ``max_connections`` in total and ``max_subscribers`` per resource
(``LIMIT`` when reached).

Subscriber back-pressure, two bounds: libsrt keeps unacknowledged data in the subscriber's
send buffer — when that holds more than ``max_backlog_ms`` of stream (:meth:`Hub.too_slow`,
checked with libsrt's statistics) the subscriber is too slow; and payloads libsrt refused
(send buffer full) wait in the subscriber's own :class:`relay.ReaderQueue`
(:meth:`Connection.enqueue`) up to ``max_queue_bytes``. MPEG-TS chunks carry no keyframe the
relay could skip to, so the queue's skip budget is 0: past either bound the caller drops the
subscriber, and the publisher and the other subscribers never wait for it. Drops are counted
in :attr:`Hub.counters`.

Not thread-safe: the server's I/O thread owns the hub; others read :meth:`Hub.snapshot`
(an immutable copy the thread publishes after every change).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from relay import Offer, PathRegistry, ReaderQueue, Refused, RelayCounters, admit
from trio_core.srt.streamid import StreamId, StreamIdRefused

__all__ = ["Connection", "Hub", "Snapshot"]

_QUEUED = Offer.QUEUED

DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_SUBSCRIBERS = 256
DEFAULT_MAX_QUEUE_BYTES = 4 * 1024 * 1024  # ~5 s of a 6 Mbit/s stream
DEFAULT_MAX_BACKLOG_MS = 5000  # unacknowledged stream time in a subscriber's send buffer
#: an MPEG-TS relay cannot skip to a keyframe: the first overflow drops the subscriber
SRT_MAX_SKIPS = 0


@dataclass(eq=False)
class Connection:
    """One accepted SRT connection (publisher or subscriber)."""

    sock: int
    resource: str
    mode: str  # "publish" | "request"
    peer: str
    created_at: float
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    sent_packets: int = 0
    received_packets: int = 0
    counters: RelayCounters | None = None
    out: ReaderQueue[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.out = ReaderQueue(self.max_queue_bytes, SRT_MAX_SKIPS, start_at_keyframe=False,
                               counters=self.counters)

    @property
    def queue(self) -> deque[bytes]:
        """Payloads libsrt refused, oldest first."""
        return self.out.queue

    @property
    def queued_bytes(self) -> int:
        return self.out.queued_bytes

    def enqueue(self, payload: bytes) -> bool:
        """Queue ``payload``; False when that would exceed the limit (nothing is queued then,
        and the subscriber counts as dropped: the caller ends it)."""
        return self.out.offer(True, len(payload), payload) is _QUEUED

    def peek(self) -> bytes | None:
        """The oldest queued payload (None when empty)."""
        return self.out.peek()

    def pop(self) -> None:
        """Forget the oldest queued payload (it was sent)."""
        out = self.out
        out.pop(len(out.queue[0]))


@dataclass(frozen=True)
class Snapshot:
    """An immutable view for other threads: resource -> publisher socket, -> subscriber sockets."""

    publishers: dict[str, int]
    subscribers: dict[str, tuple[int, ...]]
    peers: dict[int, str]


EMPTY_SNAPSHOT = Snapshot({}, {}, {})


class Hub:
    """Publishers, subscribers and their queues (see module docstring)."""

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_backlog_ms: int = DEFAULT_MAX_BACKLOG_MS,
        max_per_address: int = 0,
        unlimited_addresses: frozenset[str] = frozenset(),
    ) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.unlimited_addresses = unlimited_addresses
        self.max_subscribers = max_subscribers
        self.max_queue_bytes = max_queue_bytes
        self.max_backlog_ms = max_backlog_ms
        self.connections: dict[int, Connection] = {}
        self.paths: PathRegistry[Connection, Connection] = PathRegistry(
            max_total=max_connections, max_readers=max_subscribers)
        #: subscribers dropped as too slow (queue full or backlog); SRT never skips
        self.counters = RelayCounters()

    @property
    def publishers(self) -> dict[str, Connection]:
        """Resource -> its publisher."""
        return self.paths.publishers

    @property
    def subscribers(self) -> dict[str, dict[int, Connection]]:
        """Resource -> {socket: subscriber} (no empty entries)."""
        return self.paths.readers  # type: ignore[return-value]

    # -- admission -------------------------------------------------------------------------

    def check(self, sid: StreamId, peer: str = "") -> None:
        """Raise StreamIdRefused when a connection for ``sid`` (from ``peer``, ``ip:port``)
        cannot be taken now."""
        try:
            self.paths.check(sid.resource, publish=sid.mode == "publish")
        except Refused as exc:
            raise StreamIdRefused(exc.status, exc.message, exc.name) from None
        check_address((c.peer for c in self.connections.values()), peer, sid.resource,
                      self.max_per_address, self.unlimited_addresses)

    def add(self, sock: int, sid: StreamId, peer: str, now: float) -> Connection:
        """Register an accepted connection; raises StreamIdRefused (CONFLICT/NOTFOUND/LIMIT)."""
        if sock in self.connections:
            raise ValueError(f"socket {sock} already registered")
        self.check(sid, peer)
        conn = Connection(sock=sock, resource=sid.resource, mode=sid.mode, peer=peer,
                          created_at=now, max_queue_bytes=self.max_queue_bytes,
                          counters=self.counters)
        if sid.mode == "publish":
            self.paths.publish(sid.resource, conn)
        else:
            self.paths.add_reader(sid.resource, sock, conn)
        self.connections[sock] = conn
        return conn

    def remove(self, sock: int) -> list[Connection]:
        """Forget ``sock``; returns every connection removed (a publisher takes its
        subscribers with it). Unknown sockets: ``[]``."""
        conn = self.connections.pop(sock, None)
        if conn is None:
            return []
        removed = [conn]
        if conn.mode == "publish":
            for sub in self.paths.unpublish(conn.resource, conn):
                self.connections.pop(sub.sock, None)
                removed.append(sub)
        else:
            self.paths.remove_reader(conn.resource, sock)
        return removed

    # -- relay -----------------------------------------------------------------------------

    def targets(self, publisher: Connection) -> list[Connection]:
        """The subscribers a payload from ``publisher`` goes to."""
        return self.paths.readers_of(publisher.resource)

    def too_slow(self, conn: Connection, backlog_ms: int) -> bool:
        """True when subscriber ``conn`` has ``backlog_ms`` of unacknowledged stream (libsrt's
        ``msSndBuf``) beyond the limit, or anything beyond its queue limit queued."""
        return conn.mode == "request" and (
            backlog_ms > self.max_backlog_ms or conn.queued_bytes > self.max_queue_bytes
        )

    def subscriber_list(self) -> list[Connection]:
        """Every subscriber connection."""
        return [c for c in self.connections.values() if c.mode == "request"]

    def snapshot(self) -> Snapshot:
        return Snapshot(
            publishers={name: conn.sock for name, conn in self.publishers.items()},
            subscribers={name: tuple(subs) for name, subs in self.subscribers.items() if subs},
            peers={sock: conn.peer for sock, conn in self.connections.items()},
        )


def check_against(snapshot: Snapshot, sid: StreamId, max_connections: int,
                  max_subscribers: int) -> None:
    """Core's admission rules over a snapshot (used at handshake time from libsrt's thread)."""
    try:
        admit(sid.resource, publish=sid.mode == "publish",
              published=sid.resource in snapshot.publishers,
              readers=len(snapshot.subscribers.get(sid.resource, ())),
              total=len(snapshot.peers), max_total=max_connections,
              max_readers=max_subscribers)
    except Refused as exc:
        raise StreamIdRefused(exc.status, exc.message, exc.name) from None


def peer_host(peer: str) -> str:
    """The IP address of an ``ip:port`` / ``[v6]:port`` peer string."""
    return peer.rpartition(":")[0].strip("[]")


def check_address(peers: Iterable[str], peer: str, resource: str, max_per_address: int,
                  unlimited_addresses: frozenset[str]) -> None:
    """Raise StreamIdRefused (LIMIT) when ``peer``'s address already holds ``max_per_address``
    of the connections ``peers`` (0 = no limit; ``unlimited_addresses`` are exempt)."""
    if not max_per_address or not peer:
        return
    host = peer_host(peer)
    if host in unlimited_addresses:
        return
    held = sum(1 for other in peers if peer_host(other) == host)
    if held >= max_per_address:
        raise StreamIdRefused("LIMIT", "too many connections from this address", resource)
