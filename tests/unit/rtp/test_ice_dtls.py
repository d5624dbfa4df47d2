"""rtp.ice_dtls: the path half of a viewer/publisher — DTLS answered on the path it came
from (UDP address or ICE-TCP connection), the handshake's end reported once, a broken
handshake closing the endpoint, ICE-TCP connections forgotten, ICE restart."""

from __future__ import annotations

import logging

import pytest

from rtp.dtls import Certificate, DtlsEndpoint
from rtp.errors import DtlsError
from rtp.ice_dtls import IceDtlsPath
from rtp.stun import IceLite

A = ("127.0.0.1", 40000)
B = ("127.0.0.1", 40001)


class Mux:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.renamed: list[str] = []

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        self.sent.append((data, addr))
        return True

    def rename(self, peer: object, old_ufrag: str) -> None:
        self.renamed.append(old_ufrag)


class Conn:
    """An ICE-TCP connection's sending side."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.closed = False
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True


class Endpoint(IceDtlsPath):
    def __init__(self, cert: Certificate, remote: Certificate) -> None:
        self.ice = IceLite("ufrag0", "p" * 32, "remote0")
        self.dtls = DtlsEndpoint(cert, remote.fingerprint, "server")
        self.mux = Mux()  # type: ignore[assignment]
        self.srtp = None
        self.closed = False
        self.close_reason = ""
        self.ice_restarts = 0
        self.addr = None
        self.tcp = None
        self.tcp_paths = {}
        self._dtls_addr = None
        self._dtls_via = None
        self._dtls_heard = False
        self._wait = None
        self.connected: list[tuple[float, tuple[str, int]]] = []
        self.events: list[str] = []

    def event(self, name: str, level: int = logging.INFO, **fields: object) -> None:
        self.events.append(name)

    def close(self, reason: str = "closed") -> None:
        self.closed, self.close_reason = True, reason

    def _dtls_connected(self, now: float, addr: tuple[str, int]) -> None:
        self.connected.append((now, addr))
        self.srtp = object()  # type: ignore[assignment]


@pytest.fixture(scope="module")
def certs() -> tuple[Certificate, Certificate]:
    return Certificate.generate(), Certificate.generate()


def handshake(ep: Endpoint, client: DtlsEndpoint, addr: tuple[str, int],
              via: Conn | None) -> None:
    """Run the handshake: the client's datagrams in through ``handle_dtls``, ours back from
    where they went (the mux for UDP, ``via`` for ICE-TCP)."""
    client.start(0.0)
    for _ in range(10):
        moved = False
        for d in client.datagrams_to_send():
            moved = True
            ep.handle_dtls(d, addr, 0.0, via)
        out = via.sent if via is not None else [d for d, to in ep.mux.sent if to == addr]
        for d in out:
            moved = True
            try:
                client.receive(d, 0.0)
            except DtlsError:  # our alert, when we refused it
                return
        out.clear() if via is not None else ep.mux.sent.clear()
        if not moved:
            return


def test_dtls_over_udp_is_answered_to_its_address(certs: tuple[Certificate, Certificate]
                                                  ) -> None:
    ep = Endpoint(*certs)
    client = DtlsEndpoint(certs[1], certs[0].fingerprint, "client")
    ep.addr = B  # the selected path differs: DTLS still goes back where it came from
    handshake(ep, client, A, None)
    assert client.handshake_complete and ep.connected == [(0.0, A)]
    assert ep._dtls_heard and ep._dtls_addr == A


def test_dtls_over_ice_tcp_is_answered_on_the_connection(certs: tuple[Certificate, Certificate]
                                                        ) -> None:
    ep = Endpoint(*certs)
    conn = Conn(A)
    ep.tcp_paths[A] = conn  # type: ignore[assignment]
    client = DtlsEndpoint(certs[1], certs[0].fingerprint, "client")
    handshake(ep, client, A, conn)
    assert client.handshake_complete and len(ep.connected) == 1
    assert ep.mux.sent == []  # nothing went over UDP
    # the connection closes: forgotten, and DTLS falls back to the selected path
    ep.tcp_closed(conn)  # type: ignore[arg-type]
    assert ep.tcp_paths == {} and ep._dtls_via is None
    ep._dtls_addr, ep.addr = None, B
    ep._send_dtls(b"x")
    assert ep.mux.sent == [(b"x", B)]


def test_a_broken_handshake_closes(certs: tuple[Certificate, Certificate]) -> None:
    ep = Endpoint(*certs)
    wrong_cert = Certificate.generate()  # the client shows a certificate we were not told of
    liar = DtlsEndpoint(wrong_cert, certs[0].fingerprint, "client")
    handshake(ep, liar, A, None)
    assert ep.closed and ep.close_reason.startswith("dtls: ")
    assert "dtls-failed" in ep.events and ep.connected == []
    ep.handle_dtls(b"\x16" + b"\x00" * 20, A, 1.0)  # closed: ignored


def test_ice_restart_swaps_the_local_credentials(certs: tuple[Certificate, Certificate]) -> None:
    ep = Endpoint(*certs)
    ufrag, pwd = ep.restart_ice("remote1")
    assert ep.ice.local_ufrag == ufrag != "ufrag0" and len(pwd) == 32
    assert ep.ice.remote_ufrag == "remote1"
    assert ep.mux.renamed == ["ufrag0"] and ep.ice_restarts == 1
    assert ep.events == ["ice-restart"]
