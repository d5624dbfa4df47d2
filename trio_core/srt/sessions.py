"""SRT connections as sessions of the ``srt`` collector (Core's ``srt/srt.go`` accounting).

:class:`SrtSessions` follows the server's connections from the trio side: :meth:`sync`
(every :data:`TICK_SECONDS` in :meth:`run`) reads the immutable :class:`~.hub.Snapshot` the
I/O thread publishes, so it never touches the relay's state, and libsrt's thread-safe
``srt_bstats`` per socket. As Core:

* a publisher is a session with id = the resource, reference = the resource, location =
  ``publish:<resource>``, peer = ``ip:port``;
* a subscriber is a session with id = ``ip:port``, reference = the resource, location =
  ``play:<resource>``, peer = ``ip:port``;
* every second each session gets the growth of libsrt's ``byteRecvTotal`` as ingress and of
  ``byteSentTotal`` as egress (Core's ticker does the same with its ``Accumulated`` stats),
  so a publisher's bytes are ingress and a subscriber's are egress;
* clients in ``sessions.ip_ignorelist`` are not registered.

Unlike Core (whose SRT sessions only end by the collector's idle timeout) a session ends —
and goes into the history — on the first sync after its connection is gone; bytes of its
last second are not counted (as in Core, whose ticker stops at close). There is no
admission check (Core's SRT server has none); the hub's own limits apply.

The collector is looked up on every sync (``collector()``; None = sessions off): the
observability subsystem installs after the SRT one. Cancellation: :meth:`run` loops until
cancelled and then ends every open session (synchronous, no waiting).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from trio_core.observability.sessions import Collector
from trio_core.srt.binding import SrtError
from trio_core.srt.server import SrtServer

__all__ = ["TICK_SECONDS", "SrtSessions"]

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0


@dataclass
class _Tracked:
    session_id: str | None  # None: an ignored client (not registered)
    rx: int = 0
    tx: int = 0


def peer_ip(peer: str) -> str:
    """The address part of ``ip:port`` / ``[v6]:port``."""
    host = peer.rpartition(":")[0] if ":" in peer else peer
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


class SrtSessions:
    """Accounts ``server``'s connections into ``collector()`` (see module docstring)."""

    def __init__(self, server: SrtServer, collector: Callable[[], Collector | None]) -> None:
        self.server = server
        self.collector = collector
        self._tracked: dict[int, _Tracked] = {}  # socket id -> session

    def sync(self) -> None:
        """Register new connections, account byte growth, end sessions of gone ones."""
        collector = self.collector()
        if collector is None:
            return
        snap = self.server.snapshot
        live: dict[int, tuple[bool, str]] = {}  # sock -> (is publisher, resource)
        for resource, sock in snap.publishers.items():
            live[sock] = (True, resource)
        for resource, socks in snap.subscribers.items():
            for sock in socks:
                live[sock] = (False, resource)
        for sock in [s for s in self._tracked if s not in live]:
            gone = self._tracked.pop(sock)
            if gone.session_id is not None:
                collector.unregister(gone.session_id)
        for sock, (publisher, resource) in live.items():
            tracked = self._tracked.get(sock)
            if tracked is None:
                peer = snap.peers.get(sock, "")
                session_id = None
                if collector.collectable(peer_ip(peer)):
                    session_id = resource if publisher else peer
                    collector.register_and_activate(
                        session_id, resource,
                        ("publish:" if publisher else "play:") + resource, peer)
                tracked = self._tracked[sock] = _Tracked(session_id)
            if tracked.session_id is None:
                continue
            try:
                stats = self.server.lib.bstats(sock)
            except SrtError:
                continue  # closed meanwhile: the next sync ends the session
            rx, tx = int(stats.byteRecvTotal), int(stats.byteSentTotal)
            collector.ingress(tracked.session_id, rx - tracked.rx)
            collector.egress(tracked.session_id, tx - tracked.tx)
            tracked.rx, tracked.tx = max(rx, tracked.rx), max(tx, tracked.tx)

    def close(self) -> None:
        """End every open session (the server stopped)."""
        collector = self.collector()
        tracked, self._tracked = self._tracked, {}
        if collector is None:
            return
        for item in tracked.values():
            if item.session_id is not None:
                collector.unregister(item.session_id)

    async def run(self) -> None:
        """Sync every :data:`TICK_SECONDS` until cancelled, then end the open sessions."""
        try:
            while True:
                await trio.sleep(TICK_SECONDS)
                try:
                    self.sync()
                except Exception:  # accounting must never take the SRT server down
                    log.exception("SRT session accounting failed")
        finally:
            self.close()
