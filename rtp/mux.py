"""UdpMux: the one UDP socket that carries every viewer's ICE, DTLS and SRTP.

Datagrams are demultiplexed by their first byte (RFC 7983): STUN (0-3) is routed by the
local ufrag in its USERNAME, DTLS (20-63) and SRTCP (128-191) by the remote address, which
a Peer registers once a STUN check from it passed; SRTP media goes to a peer that has a
``handle_rtp`` method (a WHIP publisher, :mod:`rtp.publisher`). STUN without a USERNAME from
a routed address goes to its peer's ``handle_stun_response`` when it has one (the Binding
responses an edge's upstream session, :mod:`rtp.upstream`, gets from the owner). Anything else, or anything from an
unknown address, is dropped and counted in :attr:`UdpMux.dropped` by reason.

Sending uses the plain non-blocking socket (no await per packet): when the kernel buffer
is full the datagram is dropped and counted (``send-blocked``), like any UDP loss.

Bound to all interfaces (``0.0.0.0`` / ``::``) the mux opens **one socket per interface
address** (same port) instead of one wildcard socket, and answers each viewer from the
socket its STUN checks arrived on: replies and media then leave from the very address the
viewer sent to (a wildcard socket would let the kernel pick the source address, and Firefox
drops STUN responses from an address it did not send to: "Peer address mismatch").
Addresses added to the host after start are not served until a restart.

The same username demux serves ICE-TCP (:mod:`rtp.tcp`): a TCP connection's first STUN
request finds its Peer with :meth:`UdpMux.peer_for_ufrag`; after an ICE restart
(:meth:`UdpMux.rename`) the new ufrag routes to the same Peer.

Cancellation: :meth:`run` owns the sockets; cancelling it closes every Peer still routed
(each sends its goodbye, RTCP BYE and DTLS close_notify, while the sockets are still open),
then the sockets.
"""

from __future__ import annotations

import collections
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import trio

from .errors import ParseError
from .sockets import (
    close_udp_socket,
    is_wildcard,
    local_addresses,
    open_udp_socket,
    receive_datagrams,
)
from .stun import peek_username

if TYPE_CHECKING:
    from .stun import IceLite

__all__ = ["UdpMux"]

log = logging.getLogger(__name__)


def _closed_sendto(data: bytes, addr: tuple[str, int]) -> None:
    raise OSError("the UDP mux is closed")


class MuxPeer(Protocol):
    """What the mux routes datagrams to (:class:`rtp.peer.Peer` is one; this module does not
    import it)."""

    ice: IceLite
    addrs: set[tuple[str, int]]

    def handle_stun(self, data: bytes, addr: tuple[str, int], now: float) -> None: ...

    def handle_dtls(self, data: bytes, addr: tuple[str, int], now: float) -> None: ...

    def handle_rtcp(self, data: bytes, addr: tuple[str, int], now: float) -> None: ...

    def close(self, reason: str = "closed") -> None: ...


class UdpMux:
    """One UDP socket serving every Peer. ``await nursery.start(mux.run)`` returns the port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self.received = 0
        self._by_ufrag: dict[str, MuxPeer] = {}
        self._by_addr: dict[tuple[str, int], MuxPeer] = {}
        self._sock: socket.socket | None = None
        #: every bound socket (one per local address when bound to all interfaces)
        self.sockets: list[socket.socket] = []
        #: the socket each checked remote address talks to (replies leave from it)
        self._via: dict[tuple[str, int], socket.socket] = {}

    def _bind(self) -> list[socket.socket]:
        if not is_wildcard(self.host):
            return [open_udp_socket(self.host, self.requested_port)]
        addresses = local_addresses(self.host)
        socks: list[socket.socket] = []
        try:
            for ip in addresses:
                port = socks[0].getsockname()[1] if socks else self.requested_port
                try:
                    socks.append(open_udp_socket(ip, port))
                except OSError as exc:
                    if not socks:
                        raise
                    log.warning("WebRTC: cannot bind %s:%d (%s); not serving that address",
                                ip, port, exc)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return socks or [open_udp_socket(self.host, self.requested_port)]

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the bound port, receive and dispatch until cancelled."""
        socks = self._bind()
        try:
            self.port = socks[0].getsockname()[1]
            self._sock = socks[0]
            self.sockets = socks
            dispatch = self.dispatch

            def reader(sock: socket.socket) -> Callable[[bytes, tuple[str, int], float], None]:
                def on_datagram(data: bytes, addr: tuple[str, int], now: float) -> None:
                    self.received += 1
                    # IPv6 gives (host, port, flowinfo, scope_id): one key form everywhere
                    dispatch(data, addr[:2] if len(addr) > 2 else addr, now, sock)
                return on_datagram

            async with trio.open_nursery() as nursery:
                for sock in socks:
                    nursery.start_soon(receive_datagrams, sock, reader(sock), self.dropped)
                task_status.started(self.port)
        finally:
            self.close_peers()  # while the sockets are open: their goodbyes go out
            self._sock = None
            self.sockets = []
            self._via.clear()
            for sock in socks:
                close_udp_socket(sock)

    def close_peers(self, reason: str = "mux closed") -> None:
        """Close every routed Peer (each says goodbye on its path). Idempotent."""
        for peer in list(self._by_ufrag.values()):
            peer.close(reason)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The local (ip, port) of every bound socket."""
        return [s.getsockname()[:2] for s in self.sockets]

    # -- routing -------------------------------------------------------------------------

    def register(self, peer: MuxPeer) -> None:
        """Route STUN for ``peer``'s local ufrag to it."""
        self._by_ufrag[peer.ice.local_ufrag] = peer

    def rename(self, peer: MuxPeer, old_ufrag: str) -> None:
        """``peer`` restarted ICE: route its new local ufrag to it, forget ``old_ufrag``
        (checks with the old credentials are dropped from now on)."""
        if self._by_ufrag.get(old_ufrag) is peer:
            del self._by_ufrag[old_ufrag]
        self._by_ufrag[peer.ice.local_ufrag] = peer

    def peer_for_ufrag(self, ufrag: str) -> MuxPeer | None:
        """The Peer owning local ``ufrag`` (the username demux; ICE-TCP connections use it
        for their first STUN request exactly as datagrams do)."""
        return self._by_ufrag.get(ufrag)

    def route(self, addr: tuple[str, int], peer: MuxPeer) -> None:
        """Route DTLS/SRTCP from ``addr`` (which passed a STUN check) to ``peer``."""
        self._by_addr[addr] = peer

    def unregister(self, peer: MuxPeer) -> None:
        """Forget every route to ``peer``. Idempotent."""
        if self._by_ufrag.get(peer.ice.local_ufrag) is peer:
            del self._by_ufrag[peer.ice.local_ufrag]
        for addr in peer.addrs:
            if self._by_addr.get(addr) is peer:
                del self._by_addr[addr]
                self._via.pop(addr, None)

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

    def _socket_for(self, addr: tuple[str, int]) -> socket.socket | None:
        if self._sock is None:
            return None
        return self._via.get(addr, self._sock)

    def sendto_for(self, addr: tuple[str, int]) -> Callable[[bytes, tuple[str, int]], object]:
        """Like :attr:`sendto`, on the socket that ``addr`` talks to."""
        sock = self._socket_for(addr)
        return _closed_sendto if sock is None else sock.sendto

    def fileno_for(self, addr: tuple[str, int]) -> int:
        """Like :meth:`fileno`, for the socket that ``addr`` talks to."""
        sock = self._socket_for(addr)
        return -1 if sock is None else sock.fileno()

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        """Send one datagram now (from the socket ``addr`` talks to); False (and counted)
        when it could not be sent."""
        sock = self._socket_for(addr)
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

    def dispatch(self, data: bytes, addr: tuple[str, int], now: float,
                 sock: socket.socket | None = None) -> None:
        """Route one received datagram that arrived on ``sock`` (sans-IO entry point, used
        by tests too)."""
        if not data:
            self.dropped["empty"] += 1
            return
        first = data[0]
        try:
            if first < 4:
                self._on_stun(data, addr, now, sock)
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
                    handle_rtp = getattr(peer, "handle_rtp", None)  # a WHIP publisher
                    if handle_rtp is None:
                        self.dropped["rtp-from-viewer"] += 1
                    else:
                        handle_rtp(data, addr, now)
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

    def _on_stun(self, data: bytes, addr: tuple[str, int], now: float,
                 sock: socket.socket | None = None) -> None:
        username = peek_username(data)
        if username is None:
            # a response to our own checks (an edge's upstream session, rtp.upstream): by address
            routed = self._by_addr.get(addr)
            on_response = getattr(routed, "handle_stun_response", None)
            if on_response is not None:
                on_response(data, addr, now)
                return
            self.dropped["stun-no-username"] += 1
            return
        peer = self._by_ufrag.get(username.split(":", 1)[0])
        if peer is None:
            self.dropped["stun-unknown-ufrag"] += 1
            return
        before = sum(peer.ice.dropped.values())
        known = addr in peer.addrs
        if sock is not None and len(self.sockets) > 1:
            self._via[addr] = sock  # the answer (and later media) leaves from this address
        peer.handle_stun(data, addr, now)
        if sum(peer.ice.dropped.values()) != before:
            self.dropped["stun-rejected"] += 1
        if not known and addr not in peer.addrs:
            self._via.pop(addr, None)  # not a checked address: remember nothing
