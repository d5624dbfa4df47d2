"""rtp.peer: a connected viewer that is closed says goodbye — an SRTCP BYE for its SSRCs and
the DTLS close_notify — even after the server freed its DTLS state (issue 22 item 13)."""

from __future__ import annotations

import trio

from rtp.dtls import Certificate, DtlsEndpoint
from rtp.peer import Peer
from rtp.rtcp import Bye, parse_rtcp
from rtp.sdp import Codec, NegotiatedTrack
from rtp.source import Source
from rtp.srtp import SrtpSession

ADDR = ("127.0.0.1", 40000)


class FakeMux:
    """Collects what the Peer sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        assert addr == ADDR
        self.sent.append(data)
        return True

    def unregister(self, peer: object) -> None:
        pass

    def sendto_for(self, addr: tuple[str, int]):  # noqa: ANN201
        return lambda data, a: None

    def fileno_for(self, addr: tuple[str, int]) -> int:
        return -1


async def test_closing_a_released_peer_sends_bye_then_close_notify() -> None:
    server_cert, client_cert = Certificate.generate(), Certificate.generate()
    mux = FakeMux()
    source = Source("cam", ("video",))
    track = NegotiatedTrack("video", "0", 96, 0x11111111, Codec(96, "H264", 90000), 97,
                            0x22222222)
    peer = Peer(peer_id="p", source=source, mux=mux,  # type: ignore[arg-type]
                certificate=server_cert, remote_fingerprint=client_cert.fingerprint,
                ice_ufrag="u", ice_pwd="p" * 22, remote_ufrag="r", tracks={"video": track},
                cname="c")
    client = DtlsEndpoint(client_cert, server_cert.fingerprint, "client")
    now = trio.current_time()
    client.start(now)
    for _ in range(10):  # the handshake through the Peer
        out = client.datagrams_to_send()
        for d in out:
            peer.handle_dtls(d, ADDR, now)
        back, mux.sent = mux.sent, []
        for d in back:
            client.receive(d, now)
        if not out and not back:
            break
    assert peer.live and client.handshake_complete
    peer.dtls.release()  # as after the viewer's first SRTCP: OpenSSL's state is gone
    mux.sent.clear()

    peer.close("server stopping")
    assert peer.closed
    srtcp = [d for d in mux.sent if 128 <= d[0] <= 191]
    dtls = [d for d in mux.sent if 20 <= d[0] <= 63]
    assert srtcp and dtls and mux.sent.index(srtcp[-1]) < mux.sent.index(dtls[0])
    rx = SrtpSession(client.srtp_keys())
    packets = [p for d in srtcp for p in parse_rtcp(rx.unprotect_rtcp(d))]
    assert Bye([0x11111111, 0x22222222]) in packets  # the media and the RTX SSRC
    for d in dtls:
        client.receive(d, now)
    assert client.closed and client.close_reason == "close_notify"
    mux.sent.clear()
    peer.close("again")  # idempotent: nothing more
    assert mux.sent == []
