"""rtp.upstream: the edge's WHEP offer is accepted by our own WHEP answerer for H264 (any
browser profile) and Opus sources, the answer is parsed back into tracks + the owner's
candidate; an UpstreamSession checks the owner (ICE-lite) as controlling agent, completes
DTLS as client once a check succeeded, feeds the Source from SRTP and sends PLIs upstream."""

from __future__ import annotations

import pytest
import trio

from rtp.dtls import Certificate, DtlsEndpoint
from rtp.errors import SdpError
from rtp.packet import build_rtp
from rtp.rtcp import Pli, parse_rtcp
from rtp.sdp import Codec, SourceTrack, build_answer, parse_offer
from rtp.source import Source
from rtp.srtp import SrtpSession
from rtp.stun import IceLite
from rtp.upstream import UpstreamSession, build_whep_offer, parse_whep_answer

OWNER = ("127.0.0.1", 41000)


def owner_answer(offer: str, fingerprint: str, profile: str = "42e01f") -> str:
    tracks = {
        "video": SourceTrack("video", Codec(96, "H264", 90000, None, {
            "packetization-mode": "1", "profile-level-id": profile})),
        "audio": SourceTrack("audio", Codec(111, "opus", 48000, 2)),
    }
    return build_answer(parse_offer(offer), ice_ufrag="own1", ice_pwd="o" * 24,
                        fingerprint=fingerprint, candidates=[OWNER], tracks=tracks).sdp


@pytest.mark.parametrize("profile", ["42e01f", "42001f", "4d001f", "640028", "f4001e"])
def test_offer_answer_round_trip(profile: str) -> None:
    cert = Certificate.generate()
    offer = build_whep_offer(ice_ufrag="edge", ice_pwd="e" * 24, fingerprint=cert.fingerprint)
    parsed = parse_offer(offer)
    assert parsed.setup == "active" and {m.direction for m in parsed.media} == {"recvonly"}
    answer = parse_whep_answer(owner_answer(offer, cert.fingerprint, profile))
    assert answer.ice_ufrag == "own1" and answer.candidate == OWNER
    assert answer.tracks["video"].codec.name == "H264"
    assert answer.tracks["video"].rtx_payload_type is not None
    assert answer.tracks["audio"].codec.rtpmap() == "opus/48000/2"


def test_an_answer_without_a_host_candidate_is_refused() -> None:
    cert = Certificate.generate()
    offer = build_whep_offer(ice_ufrag="edge", ice_pwd="e" * 24, fingerprint=cert.fingerprint)
    text = "\r\n".join(ln for ln in owner_answer(offer, cert.fingerprint).split("\r\n")
                       if not ln.startswith("a=candidate")) + "\r\n"
    with pytest.raises(SdpError, match="candidate"):
        parse_whep_answer(text)


class FakeMux:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.routes: dict[tuple[str, int], object] = {}

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        assert addr == OWNER
        self.sent.append(data)
        return True

    def route(self, addr: tuple[str, int], peer: object) -> None:
        self.routes[addr] = peer

    def unregister(self, peer: object) -> None:
        self.routes.clear()


async def test_session_checks_handshakes_and_feeds_the_source() -> None:
    ours, theirs = Certificate.generate(), Certificate.generate()
    offer = build_whep_offer(ice_ufrag="edge", ice_pwd="e" * 24, fingerprint=ours.fingerprint)
    answer = parse_whep_answer(owner_answer(offer, theirs.fingerprint))
    mux = FakeMux()
    source = Source("relay:cam", ("video", "audio"), sockets=False)
    session = UpstreamSession(
        session_id="s", source=source, mux=mux, certificate=ours,  # type: ignore[arg-type]
        remote_fingerprint=answer.fingerprint, ice_ufrag="edge", ice_pwd="e" * 24,
        remote_ufrag=answer.ice_ufrag, remote_pwd=answer.ice_pwd,
        remote_addr=answer.candidate, tracks=answer.tracks)
    assert mux.routes == {OWNER: session} and session.dtls_role == "client"
    owner_ice = IceLite("own1", "o" * 24, "edge")
    owner_dtls = DtlsEndpoint(theirs, ours.fingerprint, "server")
    now = trio.current_time()
    session._on_timer(now)
    checks = [d for d in mux.sent if d[0] < 4]
    assert checks, mux.sent
    mux.sent.clear()
    resp = owner_ice.handle(checks[0], OWNER, now)
    assert resp is not None and owner_ice.nominated == OWNER  # USE-CANDIDATE
    session.handle_stun_response(resp, OWNER, now)
    assert session.addr == OWNER and session.ice_client.connected
    session._on_timer(now + 0.2)  # the ClientHello
    for _ in range(10):
        hello = [d for d in mux.sent if 20 <= d[0] <= 63]
        mux.sent.clear()
        for d in hello:
            owner_dtls.receive(d, now)
        back = owner_dtls.datagrams_to_send()
        for d in back:
            session.handle_dtls(d, OWNER, now)
        if not hello and not back:
            break
    assert session.live and owner_dtls.handshake_complete
    tx = SrtpSession(owner_dtls.srtp_keys())
    pt = answer.tracks["video"].codec.payload_type
    for seq in (10, 11, 12):
        pkt = build_rtp(pt, seq, 3000 * seq, 0xCAFE, b"\x41" + bytes(40), marker=True)
        session.handle_rtp(tx.protect(pkt), OWNER, now)
    assert source.state["video"].packets == 3
    source.upstream = session
    source.request_keyframe(now)
    rx = SrtpSession(owner_dtls.srtp_keys())
    plis = [p for d in mux.sent if 128 <= d[0] <= 191
            for p in parse_rtcp(rx.unprotect_rtcp(d)) if isinstance(p, Pli)]
    assert plis == [Pli(session.ssrc, 0xCAFE)]
    # the owner stops answering checks: consent fails, the session closes
    session._on_timer(now + 60)
    assert session.closed and "consent" in (session.close_reason or "")
    assert mux.routes == {}
