"""IceDtlsPath: the transport half shared by a viewer (:class:`rtp.peer.Peer`) and a publisher
(:class:`rtp.publisher.Publisher`) on the UDP mux: which path the remote uses (a UDP address
or an ICE-TCP connection), where DTLS goes back to, ICE restart, and feeding DTLS datagrams to
the :class:`~rtp.dtls.DtlsEndpoint`.

A subclass sets, in its ``__init__``, the attributes declared below (``ice``, ``dtls``,
``mux``, the path fields, ``srtp``, ``closed``, ``ice_restarts``, ``_wait``) and provides
``event``, ``close`` and ``_dtls_connected(now, addr)`` (called once, when the DTLS handshake
completed and no SRTP session exists yet). Everything here is synchronous: the mux calls it
from its receive loop; nothing blocks and nothing awaits (``_wake`` only moves the deadline of
the subclass's sleeping task).
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import trio

from .errors import DtlsError

if TYPE_CHECKING:
    from .dtls import DtlsEndpoint
    from .mux import UdpMux
    from .srtp import SrtpSession
    from .stun import IceLite
    from .tcp import TcpConnection

__all__ = ["IceDtlsPath"]


class IceDtlsPath:
    """See the module docstring."""

    ice: IceLite
    dtls: DtlsEndpoint
    mux: UdpMux
    srtp: SrtpSession | None
    closed: bool
    ice_restarts: int
    #: the selected path: the remote's address, and the ICE-TCP connection carrying it (None: UDP)
    addr: tuple[str, int] | None
    tcp: TcpConnection | None
    #: ICE-TCP connections that passed a check, by remote address
    tcp_paths: dict[tuple[str, int], TcpConnection]
    #: where the remote's last DTLS datagram came from (our DTLS answers go there)
    _dtls_addr: tuple[str, int] | None
    _dtls_via: TcpConnection | None
    _dtls_heard: bool
    _wait: trio.CancelScope | None

    def event(self, name: str, level: int = logging.INFO, **fields: object) -> None:
        raise NotImplementedError

    def close(self, reason: str = "closed") -> None:
        raise NotImplementedError

    def _dtls_connected(self, now: float, addr: tuple[str, int]) -> None:
        raise NotImplementedError

    def tcp_closed(self, conn: TcpConnection) -> None:
        """The ICE-TCP connection ``conn`` closed: forget it (if it carried the media, the
        remote has to find another path — an ICE restart — before its timeout)."""
        if self.tcp_paths.get(conn.addr) is conn:
            del self.tcp_paths[conn.addr]
        if self._dtls_via is conn:
            self._dtls_via = None

    def restart_ice(self, remote_ufrag: str) -> tuple[str, str]:
        """An ICE restart (a WHEP/WHIP PATCH with the remote's new ufrag/pwd): new local
        credentials, registered in the mux's username demux (the old ufrag is forgotten);
        DTLS/SRTP and the current path stay until checks with the new credentials nominate
        a new one (an ICE-lite agent never checks, so the remote's new password is not
        needed). Returns (ufrag, pwd)."""
        ufrag, pwd = secrets.token_hex(4), secrets.token_hex(16)
        old = self.ice
        self.ice = old.restarted(ufrag, pwd, remote_ufrag)
        self.mux.rename(self, old.local_ufrag)
        self.ice_restarts += 1
        self.event("ice-restart", ufrag=ufrag, remote_ufrag=remote_ufrag)
        return ufrag, pwd

    def handle_dtls(self, data: bytes, addr: tuple[str, int], now: float,
                    via: TcpConnection | None = None) -> None:
        """A DTLS datagram from one of our checked addresses (or ICE-TCP connections)."""
        if self.closed:
            return
        self._dtls_addr = addr
        self._dtls_via = via
        self._dtls_heard = True
        try:
            self.dtls.receive(data, now)
        except DtlsError as exc:
            self._flush_dtls()
            self.event("dtls-failed", logging.WARNING, error=str(exc).replace(" ", "_")[:120])
            self.close(f"dtls: {exc}")
            return
        self._flush_dtls()
        if self.dtls.closed:
            self.close(f"dtls: {self.dtls.close_reason or 'closed'}")
            return
        if self.dtls.handshake_complete and self.srtp is None:
            self._dtls_connected(now, addr)
        self._wake()

    def _flush_dtls(self) -> None:
        for datagram in self.dtls.datagrams_to_send():
            self._send_dtls(datagram)

    def _send_dtls(self, datagram: bytes) -> None:
        """DTLS goes back where the remote's DTLS came from (an ICE-TCP connection or a UDP
        address), else on the selected path."""
        via = self._dtls_via
        if via is not None and not via.closed:
            via.send(datagram)
        elif self._dtls_addr is None and self.tcp is not None:
            self.tcp.send(datagram)
        elif (self._dtls_addr or self.addr) is not None:
            self.mux.send(datagram, self._dtls_addr or self.addr)  # type: ignore[arg-type]

    def _wake(self) -> None:
        if self._wait is not None:
            self._wait.deadline = trio.current_time()
