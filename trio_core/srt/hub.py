"""Who publishes and who subscribes to which SRT stream: the relay's state, sans-IO.

A :class:`Hub` knows connections by socket id (ints), nothing about sockets themselves.
Rules (Core's ``srt/srt.go``): one publisher per resource (a second gets ``CONFLICT``), any
number of subscribers (a request for a resource nobody publishes gets ``NOTFOUND``); when
the publisher leaves, its subscribers are closed too. Limits: ``max_connections`` in total
and ``max_subscribers`` per resource (``LIMIT`` when reached).

Subscriber back-pressure, two bounds: libsrt keeps unacknowledged data in the subscriber's
send buffer — when that holds more than ``max_backlog_ms`` of stream (:meth:`Hub.too_slow`,
checked with libsrt's statistics) the subscriber is too slow; and payloads libsrt refused
(send buffer full) wait in the subscriber's own queue (:meth:`Connection.enqueue`) up to
``max_queue_bytes``. Past either bound the caller drops the subscriber, so the publisher and
the other subscribers never wait for it.

Not thread-safe: the server's I/O thread owns the hub; others read :meth:`Hub.snapshot`
(an immutable copy the thread publishes after every change).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .streamid import StreamId, StreamIdRefused

__all__ = ["Connection", "Hub", "Snapshot"]

DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_SUBSCRIBERS = 256
DEFAULT_MAX_QUEUE_BYTES = 4 * 1024 * 1024  # ~5 s of a 6 Mbit/s stream
DEFAULT_MAX_BACKLOG_MS = 5000  # unacknowledged stream time in a subscriber's send buffer


@dataclass(eq=False)
class Connection:
    """One accepted SRT connection (publisher or subscriber)."""

    sock: int
    resource: str
    mode: str  # "publish" | "request"
    peer: str
    created_at: float
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    queue: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    sent_packets: int = 0
    received_packets: int = 0

    def enqueue(self, payload: bytes) -> bool:
        """Queue ``payload``; False when that would exceed the limit (nothing is queued then)."""
        if self.queued_bytes + len(payload) > self.max_queue_bytes:
            return False
        self.queue.append(payload)
        self.queued_bytes += len(payload)
        return True

    def peek(self) -> bytes | None:
        """The oldest queued payload (None when empty)."""
        return self.queue[0] if self.queue else None

    def pop(self) -> None:
        """Forget the oldest queued payload (it was sent)."""
        payload = self.queue.popleft()
        self.queued_bytes -= len(payload)


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
    ) -> None:
        self.max_connections = max_connections
        self.max_subscribers = max_subscribers
        self.max_queue_bytes = max_queue_bytes
        self.max_backlog_ms = max_backlog_ms
        self.connections: dict[int, Connection] = {}
        self.publishers: dict[str, Connection] = {}
        self.subscribers: dict[str, dict[int, Connection]] = {}

    # -- admission -------------------------------------------------------------------------

    def check(self, sid: StreamId) -> None:
        """Raise StreamIdRefused when a connection for ``sid`` cannot be taken now."""
        check_against(self.snapshot(), sid, self.max_connections, self.max_subscribers)

    def add(self, sock: int, sid: StreamId, peer: str, now: float) -> Connection:
        """Register an accepted connection; raises StreamIdRefused (CONFLICT/NOTFOUND/LIMIT)."""
        if sock in self.connections:
            raise ValueError(f"socket {sock} already registered")
        self.check(sid)
        conn = Connection(sock=sock, resource=sid.resource, mode=sid.mode, peer=peer,
                          created_at=now, max_queue_bytes=self.max_queue_bytes)
        self.connections[sock] = conn
        if sid.mode == "publish":
            self.publishers[sid.resource] = conn
        else:
            self.subscribers.setdefault(sid.resource, {})[sock] = conn
        return conn

    def remove(self, sock: int) -> list[Connection]:
        """Forget ``sock``; returns every connection removed (a publisher takes its
        subscribers with it). Unknown sockets: ``[]``."""
        conn = self.connections.pop(sock, None)
        if conn is None:
            return []
        removed = [conn]
        if conn.mode == "publish":
            if self.publishers.get(conn.resource) is conn:
                del self.publishers[conn.resource]
            for sub in self.subscribers.pop(conn.resource, {}).values():
                self.connections.pop(sub.sock, None)
                removed.append(sub)
        else:
            subs = self.subscribers.get(conn.resource)
            if subs is not None:
                subs.pop(sock, None)
                if not subs:
                    del self.subscribers[conn.resource]
        return removed

    # -- relay -----------------------------------------------------------------------------

    def targets(self, publisher: Connection) -> list[Connection]:
        """The subscribers a payload from ``publisher`` goes to."""
        subs = self.subscribers.get(publisher.resource)
        return list(subs.values()) if subs else []

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
    if len(snapshot.peers) >= max_connections:
        raise StreamIdRefused("LIMIT", "too many connections", sid.resource)
    published = sid.resource in snapshot.publishers
    if sid.mode == "publish":
        if published:
            raise StreamIdRefused("CONFLICT", "already publishing", sid.resource)
        return
    if not published:
        raise StreamIdRefused("NOTFOUND", "no publisher for this resource found", sid.resource)
    if len(snapshot.subscribers.get(sid.resource, ())) >= max_subscribers:
        raise StreamIdRefused("LIMIT", "too many subscribers", sid.resource)
