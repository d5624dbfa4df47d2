"""rtp.publisher: a WHIP publisher over an in-memory DTLS peer in either role — its SRTP
media lands in the Source, gaps are NACKed, RTX is unwrapped, PLI is rate-limited, reports
carry REMB; the media timeout ends it."""

from __future__ import annotations

import struct

import pytest
import trio

from rtp.dtls import Certificate, DtlsEndpoint
from rtp.packet import build_rtp
from rtp.publisher import Publisher, build_remb
from rtp.rtcp import Nack, Pli, ReceiverReport, parse_rtcp
from rtp.sdp import Codec
from rtp.source import Source
from rtp.srtp import SrtpSession
from rtp.whip_sdp import IngestTrack

ADDR = ("127.0.0.1", 40000)


class FakeMux:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.routes: dict[tuple[str, int], object] = {}

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        assert addr == ADDR
        self.sent.append(data)
        return True

    def route(self, addr: tuple[str, int], peer: object) -> None:
        self.routes[addr] = peer

    def unregister(self, peer: object) -> None:
        self.routes.clear()


def stun_request(ufrag: str, pwd: str) -> bytes:
    from aioice import stun

    msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    msg.attributes["USERNAME"] = f"{ufrag}:remote"
    msg.attributes["PRIORITY"] = 1
    msg.attributes["ICE-CONTROLLING"] = 1
    msg.attributes["USE-CANDIDATE"] = None
    msg.add_message_integrity(pwd.encode())
    msg.add_fingerprint()
    return bytes(msg)


def make(role: str, **kw: object) -> tuple[Publisher, FakeMux, Source, DtlsEndpoint]:
    ours, theirs = Certificate.generate(), Certificate.generate()
    mux = FakeMux()
    source = Source("whip:cam", ("video", "audio"), sockets=False)
    tracks = {"video": IngestTrack("video", "0", Codec(102, "H264", 90000), 103),
              "audio": IngestTrack("audio", "1", Codec(111, "opus", 48000, 2))}
    pub = Publisher(session_id="s", source=source, mux=mux,  # type: ignore[arg-type]
                    certificate=ours, remote_fingerprint=theirs.fingerprint, dtls_role=role,
                    ice_ufrag="ufrag", ice_pwd="p" * 24, remote_ufrag="remote", tracks=tracks,
                    **kw)  # type: ignore[arg-type]
    remote = DtlsEndpoint(theirs, ours.fingerprint, "server" if role == "client" else "client")
    return pub, mux, source, remote


def handshake(pub: Publisher, mux: FakeMux, remote: DtlsEndpoint) -> SrtpSession:
    now = trio.current_time()
    pub.handle_stun(stun_request("ufrag", "p" * 24), ADDR, now)
    assert pub.addr == ADDR and mux.routes == {ADDR: pub}
    mux.sent.clear()
    if pub.dtls_role == "client":
        pub._on_timer(now + 1)  # the delayed ClientHello
    else:
        remote.start(now)
    for _ in range(10):
        out = remote.datagrams_to_send()
        for d in out:
            pub.handle_dtls(d, ADDR, now)
        back = [d for d in mux.sent if 20 <= d[0] <= 63]
        mux.sent.clear()
        for d in back:
            remote.receive(d, now)
        if not out and not back:
            break
    assert pub.live and remote.handshake_complete
    return SrtpSession(remote.srtp_keys())


@pytest.mark.parametrize("role", ["server", "client"])
async def test_media_feeds_the_source_and_gaps_are_nacked(role: str) -> None:
    pub, mux, source, remote = make(role)
    tx = handshake(pub, mux, remote)
    now = trio.current_time()
    for seq in (100, 101, 104):  # 102 and 103 lost
        pkt = build_rtp(102, seq, 9000 * seq, 0xAAAA, b"\x41" + bytes(50), marker=True)
        pub.handle_rtp(tx.protect(pkt), ADDR, now)
    assert source.state["video"].packets == 3 and pub.packets == 3
    rx = SrtpSession(remote.srtp_keys())
    fb = [p for d in mux.sent for p in parse_rtcp(rx.unprotect_rtcp(d))]
    assert any(isinstance(p, Nack) and p.media_ssrc == 0xAAAA and sorted(p.lost) == [102, 103]
               for p in fb), fb
    # the repair comes as RTX (PT 103): unwrapped into the original packet
    mux.sent.clear()
    rtx = build_rtp(103, 7, 9000 * 102, 0xBBBB, struct.pack("!H", 102) + b"\x41" + bytes(50))
    pub.handle_rtp(tx.protect(rtx), ADDR, now)
    assert pub.rtx_received == 1 and source.state["video"].packets == 4
    st = source.state["video"]
    repaired = st.lookup((102 + st.seq_off) & 0xFFFF, now)
    assert repaired is not None and repaired.data[1] & 0x7F == 102
    # padding-only RTX (bandwidth probing) is dropped
    probe = build_rtp(103, 8, 0, 0xBBBB, b"")
    pub.handle_rtp(tx.protect(probe), ADDR, now)
    assert pub.dropped["rtx-padding"] == 1
    # viewers' PLIs go upstream at most every 500 ms
    source.upstream = pub
    for _ in range(3):
        source.request_keyframe(now)
    plis = [p for d in mux.sent for p in parse_rtcp(rx.unprotect_rtcp(d)) if isinstance(p, Pli)]
    assert plis == [Pli(pub.ssrc, 0xAAAA)]
    # a viewer's NACK the Source's history missed goes upstream too
    mux.sent.clear()
    source.request_repair("video", (200 + st.seq_off) & 0xFFFF, now)
    nacks = [p for d in mux.sent for p in parse_rtcp(rx.unprotect_rtcp(d))
             if isinstance(p, Nack)]
    assert nacks == [Nack(pub.ssrc, 0xAAAA, [200])]
    # receiver report (+ REMB) about every second
    mux.sent.clear()
    pub._on_timer(now + 1.5)
    reports = [p for d in mux.sent for p in parse_rtcp(rx.unprotect_rtcp(d))]
    rr = [p for p in reports if isinstance(p, ReceiverReport)]
    assert rr and rr[0].reports[0].ssrc == 0xAAAA
    assert rr[0].reports[0].packets_lost == 1  # 100..104 with 103 never repaired


async def test_no_rtp_for_the_media_timeout_closes_it() -> None:
    closed: list[Publisher] = []
    pub, mux, source, remote = make("server", media_timeout=2.0, on_close=closed.append)
    handshake(pub, mux, remote)
    pub._on_timer(trio.current_time() + 1.0)
    assert not pub.closed
    pub._on_timer(trio.current_time() + 2.5)
    assert pub.closed and pub.close_reason == "no RTP for 2 s" and closed == [pub]
    assert mux.routes == {}


async def test_setup_timeout_closes_a_publisher_that_never_connects() -> None:
    pub, mux, source, remote = make("server", setup_timeout=1.0)
    pub._on_timer(trio.current_time() + 1.5)
    assert pub.closed and pub.close_reason.startswith("setup timeout")


def test_remb_encoding() -> None:
    pkt = build_remb(1, 6_000_000, [0xAAAA])
    assert pkt[0] == 0x8F and pkt[1] == 206 and pkt[12:16] == b"REMB"
    word = struct.unpack("!I", pkt[16:20])[0]
    num, exp, mantissa = word >> 24, (word >> 18) & 0x3F, word & 0x3FFFF
    assert num == 1 and abs((mantissa << exp) - 6_000_000) < (1 << exp)
    assert struct.unpack("!I", pkt[20:24])[0] == 0xAAAA
    assert parse_rtcp(pkt) == []  # skipped by our parser, not an error


async def test_consent_expiry_binds_publishers_that_refresh_it() -> None:
    pub, mux, source, remote = make("server", consent_timeout=30.0, media_timeout=1e9)
    handshake(pub, mux, remote)
    now = trio.current_time()
    pub._on_timer(now + 40)  # one check only (FFmpeg's muxer): the RTP timeout rules
    assert not pub.closed
    pub.handle_stun(stun_request("ufrag", "p" * 24), ADDR, now)  # a browser refreshes
    pub._on_timer(now + 20)
    assert not pub.closed
    pub._on_timer(now + 31)
    assert pub.closed and pub.close_reason == "consent expired"


class FakeTcp:
    """An ICE-TCP connection (rtp.tcp.TcpConnection's part a publisher uses)."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.sent: list[bytes] = []
        self.closed = False
        self.finished = False

    def send(self, packet: bytes) -> bool:
        self.sent.append(packet)
        return True

    def finish(self) -> None:
        self.finished = True


@pytest.mark.parametrize("role", ["server", "client"])
async def test_a_publisher_over_ice_tcp_and_its_consent(role: str) -> None:
    """STUN, DTLS, media and our RTCP over one ICE-TCP connection (nothing on the mux);
    consent freshness binds it as over UDP; closing finishes the connection."""
    pub, mux, source, remote = make(role, consent_timeout=30.0, media_timeout=1e9)
    conn = FakeTcp(("127.0.0.1", 50000))
    now = trio.current_time()
    assert pub.handle_stun(stun_request("ufrag", "p" * 24), conn.addr, now, via=conn)
    assert pub.tcp is conn and pub.addr == conn.addr and not mux.routes and not mux.sent
    assert not pub.handle_stun(stun_request("ufrag", "wrong" * 5), conn.addr, now, via=conn)
    conn.sent.clear()
    if role == "client":
        pub._on_timer(now + 1)  # the delayed ClientHello goes over the connection
    else:
        remote.start(now)
    for _ in range(10):
        out = remote.datagrams_to_send()
        for d in out:
            pub.handle_dtls(d, conn.addr, now, via=conn)
        back = [d for d in conn.sent if 20 <= d[0] <= 63]
        conn.sent.clear()
        for d in back:
            remote.receive(d, now)
        if not out and not back:
            break
    assert pub.live and not mux.sent
    srtp = SrtpSession(remote.srtp_keys())
    got: list[bytes] = []
    source.listeners.append(type("L", (), {"forward": lambda self, p: got.append(p)})())
    for seq in range(3):
        pub.handle_rtp(srtp.protect(build_rtp(102, seq, seq * 3000, 0x1234, b"\x65" + b"x" * 50)),
                       conn.addr, now)
    assert pub.packets == 3 and len(got) == 3
    pub._on_timer(now + 1)  # RR + REMB over the connection
    assert any(isinstance(p, ReceiverReport) for d in conn.sent
               for p in parse_rtcp(srtp.unprotect_rtcp(d)))
    assert pub.stats()["transport"] == "tcp"
    pub.handle_stun(stun_request("ufrag", "p" * 24), conn.addr, now + 10, via=conn)
    pub._on_timer(now + 35)
    assert not pub.closed  # consent refreshed over TCP at +10
    pub._on_timer(now + 41)
    assert pub.closed and pub.close_reason == "consent expired" and conn.finished


async def test_restart_ice_swaps_credentials_and_keeps_the_session() -> None:
    pub, mux, source, remote = make("server")
    renamed: list[str] = []
    mux.rename = lambda peer, old: renamed.append(old)  # type: ignore[attr-defined]
    srtp = handshake(pub, mux, remote)
    ufrag, pwd = pub.restart_ice("remote2")
    assert renamed == ["ufrag"] and pub.ice.local_ufrag == ufrag and pub.ice_restarts == 1
    now = trio.current_time()
    # the old credentials are refused; the new ones pass and keep DTLS/SRTP
    assert not pub.handle_stun(stun_request("ufrag", "p" * 24), ADDR, now)
    from aioice import stun

    msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    msg.attributes["USERNAME"] = f"{ufrag}:remote2"
    msg.attributes["PRIORITY"] = 1
    msg.attributes["ICE-CONTROLLING"] = 1
    msg.attributes["USE-CANDIDATE"] = None
    msg.add_message_integrity(pwd.encode())
    msg.add_fingerprint()
    assert pub.handle_stun(bytes(msg), ADDR, now)
    pub.handle_rtp(srtp.protect(build_rtp(102, 1, 0, 0x1234, b"\x65xx")), ADDR, now)
    assert pub.live and pub.packets == 1 and not pub.closed
