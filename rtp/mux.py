"""UdpMux: the one UDP socket that carries every viewer's ICE, DTLS and SRTP.

Datagrams are demultiplexed by their first byte (RFC 7983): STUN (0-3) is routed by the
local ufrag in its USERNAME, DTLS (20-63) and SRTCP (128-191) by the remote address, which
a Peer registers once a STUN check from it passed. Anything else, or anything from an
unknown address, is dropped and counted in :attr:`UdpMux.dropped` by reason.

Sending uses the plain non-blocking socket (no await per packet): when the kernel buffer
is full the datagram is dropped and counted (``send-blocked``), like any UDP loss.

Cancellation: :meth:`run` owns the socket; cancelling it closes the socket.
"""

from __future__ import annotations

import collections
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .errors import ParseError
from .sockets import close_udp_socket, open_udp_socket, receive_datagrams
from .stun import peek_username

if TYPE_CHECKING:
    from .peer import Peer

__all__ = ["UdpMux"]

log = logging.getLogger(__name__)


def _closed_sendto(data: bytes, addr: tuple[str, int]) -> None:
    raise OSError("the UDP mux is closed")


class UdpMux:
    """One UDP socket serving every Peer. ``await nursery.start(mux.run)`` returns the port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self.received = 0
        self._by_ufrag: dict[str, Peer] = {}
        self._by_addr: dict[tuple[str, int], Peer] = {}
        self._sock: socket.socket | None = None

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the bound port, receive and dispatch until cancelled."""
        sock = open_udp_socket(self.host, self.requested_port)
        try:
            self.port = sock.getsockname()[1]
            self._sock = sock
            task_status.started(self.port)
            dispatch = self.dispatch

            def on_datagram(data: bytes, addr: tuple[str, int], now: float) -> None:
                self.received += 1
                dispatch(data, addr, now)

            await receive_datagrams(sock, on_datagram, self.dropped)
        finally:
            self._sock = None
            for peer in list(self._by_ufrag.values()):
                peer.close("mux closed")
            close_udp_socket(sock)

    # -- routing -------------------------------------------------------------------------

    def register(self, peer: Peer) -> None:
        """Route STUN for ``peer``'s local ufrag to it."""
        self._by_ufrag[peer.ice.local_ufrag] = peer

    def route(self, addr: tuple[str, int], peer: Peer) -> None:
        """Route DTLS/SRTCP from ``addr`` (which passed a STUN check) to ``peer``."""
        self._by_addr[addr] = peer

    def unregister(self, peer: Peer) -> None:
        """Forget every route to ``peer``. Idempotent."""
        if self._by_ufrag.get(peer.ice.local_ufrag) is peer:
            del self._by_ufrag[peer.ice.local_ufrag]
        for addr in peer.addrs:
            if self._by_addr.get(addr) is peer:
                del self._by_addr[addr]

    @property
    def peer_count(self) -> int:
        return len(self._by_ufrag)

    # -- I/O -----------------------------------------------------------------------------

    @property
    def sendto(self) -> Callable[[bytes, tuple[str, int]], object]:
        """The mux socket's own non-blocking ``sendto`` (the hot path: raises
        BlockingIOError when the buffer is full, OSError once the socket is closed)."""
        if self._sock is None:
            return _closed_sendto
        return self._sock.sendto

    def fileno(self) -> int:
        """The mux socket's file descriptor (-1 when not running), for the C fan-out."""
        return -1 if self._sock is None else self._sock.fileno()

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        """Send one datagram now; False (and counted) when it could not be sent."""
        sock = self._sock
        if sock is None:
            self.dropped["send-closed"] += 1
            return False
        try:
            sock.sendto(data, addr)
        except BlockingIOError:
            self.dropped["send-blocked"] += 1
            return False
        except OSError:
            self.dropped["send-error"] += 1
            return False
        return True

    def dispatch(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """Route one received datagram (sans-IO entry point, used by tests too)."""
        if not data:
            self.dropped["empty"] += 1
            return
        first = data[0]
        try:
            if first < 4:
                self._on_stun(data, addr, now)
            elif 20 <= first <= 63:
                peer = self._by_addr.get(addr)
                if peer is None:
                    self.dropped["dtls-unknown-address"] += 1
                else:
                    peer.handle_dtls(data, addr, now)
            elif 128 <= first <= 191:
                peer = self._by_addr.get(addr)
                if peer is None:
                    self.dropped["srtp-unknown-address"] += 1
                elif len(data) >= 2 and 192 <= data[1] <= 223:
                    peer.handle_rtcp(data, addr, now)
                else:
                    self.dropped["rtp-from-viewer"] += 1
            else:
                self.dropped["unknown-first-byte"] += 1
        except ParseError as exc:
            self.dropped[exc.reason] += 1
        except Exception:  # a bug must cost one viewer, never the mux and every other viewer
            self.dropped["peer-error"] += 1
            peer = self._by_addr.get(addr)
            log.exception("closing peer after an error handling a datagram from %s", addr)
            if peer is not None:
                peer.close("internal error")

    def _on_stun(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        username = peek_username(data)
        if username is None:
            self.dropped["stun-no-username"] += 1
            return
        peer = self._by_ufrag.get(username.split(":", 1)[0])
        if peer is None:
            self.dropped["stun-unknown-ufrag"] += 1
            return
        before = sum(peer.ice.dropped.values())
        peer.handle_stun(data, addr, now)
        if sum(peer.ice.dropped.values()) != before:
            self.dropped["stun-rejected"] += 1
