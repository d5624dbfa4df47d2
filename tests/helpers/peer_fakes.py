"""Stand-ins for a Peer's neighbours in unit tests of ``rtp.peer`` and the fan-out: the UDP
mux (one real non-blocking socket, or a transport that is not the mux socket), a finished
DTLS handshake with known keys (the handshake itself is tested elsewhere), and one real TCP
connection (an ICE-TCP viewer's or an RTMP player's) for the native stream sends."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rtp.dtls import SrtpKeys
    from rtp.peer import Peer


class FakeMux:
    """The Peer's view of the UDP mux: a real socket on 127.0.0.1, or (``tcp``) a transport
    that is not the mux socket: ``fileno_for`` -1 and its own sender, which records what it
    gets RFC 4571-framed in ``framed`` (and still delivers it over the socket)."""

    def __init__(self, tcp: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.tcp = tcp
        self.framed: list[bytes] = []

    @property
    def sendto(self) -> Any:
        return self.sock.sendto

    def fileno(self) -> int:
        return self.sock.fileno()

    def tcp_send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.framed.append(len(data).to_bytes(2, "big") + data)
        self.sock.sendto(data, addr)

    def sendto_for(self, addr: tuple[str, int]) -> Any:
        return self.tcp_send if self.tcp else self.sock.sendto

    def fileno_for(self, addr: tuple[str, int]) -> int:
        return -1 if self.tcp else self.sock.fileno()

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        self.sock.sendto(data, addr)
        return True

    def register(self, peer: Peer) -> None: ...
    def unregister(self, peer: Peer) -> None: ...
    def route(self, addr: tuple[str, int], peer: Peer) -> None: ...


class DoneDtls:
    """A finished DTLS handshake with known keys."""

    handshake_complete = True
    closed = False
    released = True
    srtp_profile = b"SRTP_AES128_CM_SHA1_80"

    def __init__(self, keys: SrtpKeys) -> None:
        self.keys = keys

    def srtp_keys(self) -> SrtpKeys:
        return self.keys

    def next_timeout(self) -> None:
        return None

    def datagrams_to_send(self) -> list[bytes]:
        return []

    def release(self) -> None: ...
    def close(self) -> None: ...


@contextmanager
def tcp_pair(sndbuf: int = 0, rcvbuf: int = 0) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, non-blocking; client side, blocking) of one real TCP connection."""
    lst = socket.create_server(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    client.connect(lst.getsockname())
    server, _ = lst.accept()
    lst.close()
    if sndbuf:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    server.setblocking(False)
    try:
        yield server, client
    finally:
        server.close()
        client.close()
