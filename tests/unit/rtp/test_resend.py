"""Resends never trip libsrtp's replay windows (issue 13).

A real Peer (both fan-out implementations) over a real UDP socket, fed a synthetic H264
stream (one IDR, then 299 one-packet frames, ~300 packets in the GOP), and a "browser" that
decrypts with its own libsrtp session (whose receiver also has a replay window):

* a PLI long after the keyframe (300 packets behind the newest) is answered with the whole
  GOP replayed as *new* packets: consecutive sequence numbers, timestamps after the last
  frame, the keyframe first — every one accepted by both libsrtp sides;
* a NACK for a packet 250 behind is repaired on the RTX stream (RFC 4588) when the viewer
  negotiated it, also for a replayed packet; without RTX it is counted ``nack-too-old``.
"""

from __future__ import annotations

import os
import socket

import pytest
import trio
from pylibsrtp import Policy

import rtp.source
from rtp.dtls import Certificate, SrtpKeys
from rtp.errors import ParseError
from rtp.fanout import NATIVE
from rtp.packet import build_rtp, parse_rtp
from rtp.peer import Peer
from rtp.rtcp import build_nack, build_pli
from rtp.sdp import Codec, NegotiatedTrack
from rtp.source import Source
from rtp.srtp import SrtpSession
from tests.helpers.peer_fakes import DoneDtls, FakeMux

VIDEO_SDP = """v=0\r
o=- 0 0 IN IP4 127.0.0.1\r
s=No Name\r
c=IN IP4 127.0.0.1\r
t=0 0\r
m=video 40002 RTP/AVP 96\r
a=rtpmap:96 H264/90000\r
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoD2wEQAAAwABAAADADIPFi5I,aMuMsg==; profile-level-id=42C01E\r
"""
PT, RTX_PT = 102, 103
FRAMES = 300


class Browser:
    """Receives and decrypts like a browser: its libsrtp refuses replays and garbage."""

    def __init__(self, keys: SrtpKeys) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.srtp = SrtpSession(SrtpKeys(keys.profile, keys.rx_key, keys.rx_salt,
                                         keys.tx_key, keys.tx_salt))
        self.media: list[bytes] = []  # decrypted, in arrival order
        self.rtx: list[bytes] = []
        self.refused: list[str] = []

    @property
    def addr(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            if 192 <= data[1] <= 223:
                continue  # RTCP (sender reports)
            try:
                plain = self.srtp.unprotect(data)
            except ParseError as exc:
                self.refused.append(exc.reason)
                continue
            (self.rtx if plain[1] & 0x7F == RTX_PT else self.media).append(plain)

    async def settle(self, count: int, rtx: int = 0) -> None:
        with trio.fail_after(10):
            while len(self.media) < count or len(self.rtx) < rtx:
                await trio.sleep(0.01)
                self.drain()
        await trio.sleep(0.05)
        self.drain()


def nal(packet: bytes) -> int:
    return packet[parse_rtp(packet).header_size] & 0x1F


@pytest.fixture(params=["python", "native-inline", "native-2-workers"])
def fanout_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The Source's fan-out: the Python loop (0), the C engine inline (1) or 2 threads."""
    if request.param == "python":
        monkeypatch.setattr(rtp.source, "open_engine", lambda workers=None: None)
        return 0
    if not NATIVE:
        pytest.fail("the C fan-out is not built here (a compiler is needed at install time)")
    return 1 if request.param == "native-inline" else 2


@pytest.mark.parametrize("with_rtx", [True, False])
async def test_pli_replay_and_late_nack_repairs(fanout_impl: int, with_rtx: bool) -> None:
    keys = SrtpKeys(Policy.SRTP_PROFILE_AES128_CM_SHA1_80, os.urandom(16), os.urandom(14),
                    os.urandom(16), os.urandom(14))
    browser = Browser(keys)
    mux = FakeMux()
    source = Source("cam", ("video",), workers=fanout_impl or 1)
    async with trio.open_nursery() as nursery:
        await nursery.start(source.run)
        source.set_sdp(VIDEO_SDP)
        codec = Codec(PT, "H264", 90000)
        track = NegotiatedTrack("video", "0", PT, 0x11111111, codec,
                                RTX_PT if with_rtx else None, 0x22222222 if with_rtx else None)
        peer = Peer(peer_id="p", source=source, mux=mux,  # type: ignore[arg-type]
                    certificate=Certificate.generate(), remote_fingerprint="AB" + ":AB" * 31,
                    ice_ufrag="u", ice_pwd="p" * 22, remote_ufrag="r", tracks={"video": track},
                    cname="c")
        peer.dtls = DoneDtls(keys)  # type: ignore[assignment]
        source.attach(peer)
        peer.addr = browser.addr
        now = trio.current_time()
        peer._connected(now)  # DTLS done: the viewer joins (no GOP yet: straight to fan-out)
        assert peer.native == bool(fanout_impl)
        assert (peer.out["video"] in source.fanout["video"]) == (not fanout_impl)

        # the producer: an IDR frame, then one-packet P frames, 25 fps
        seq0, ts0 = 5000, 1000
        for i in range(FRAMES):
            payload = bytes([0x65 if i == 0 else 0x41]) + bytes(600)
            source.on_datagram("video", build_rtp(96, seq0 + i, ts0 + 3600 * i, 0xABC, payload,
                                                  marker=True), now + i * 0.004)
            if i % 20 == 19:  # let the browser read (its socket buffer is not endless)
                await trio.sleep(0.005)
                browser.drain()
        await browser.settle(FRAMES + 1)  # + the SPS/PPS STAP-A the Source put before the IDR
        before_pli = list(browser.media)
        assert nal(before_pli[0]) == 24 and nal(before_pli[1]) == 5

        # PLI, ~300 packets after the keyframe: replayed at the next frame boundary
        pli = browser.srtp.protect_rtcp(build_pli(0x1234, track.ssrc))
        peer.handle_rtcp(pli, browser.addr, now + FRAMES * 0.004)
        payload = bytes([0x41]) + bytes(600)
        source.on_datagram("video", build_rtp(96, seq0 + FRAMES, ts0 + 3600 * FRAMES, 0xABC,
                                              payload, marker=True), now + FRAMES * 0.004)
        await browser.settle(2 * (FRAMES + 1) + 1)
        assert peer.keyframe_replays == 1 and peer.replayed_packets == FRAMES + 1
        assert "srtp-protect" not in peer.dropped, peer.dropped
        assert browser.refused == []
        media = browser.media
        assert len(media) == 2 * (FRAMES + 1) + 1
        headers = [parse_rtp(p) for p in media]
        seqs = [h.sequence for h in headers]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False)), seqs
        stamps = [h.timestamp for h in headers]
        assert all(0 <= (b - a) & 0xFFFFFFFF < 0x80000000 for a, b in zip(stamps, stamps[1:],
                                                                      strict=False))
        replay = media[FRAMES + 1:2 * (FRAMES + 1)]
        assert [nal(p) for p in replay[:2]] == [24, 5]  # the keyframe again, first
        assert stamps[FRAMES + 1] > stamps[FRAMES]  # after the last frame the viewer had
        assert [p[12:] for p in replay] == [p[12:] for p in before_pli]
        assert nal(media[-1]) == 1 and stamps[-1] > stamps[-2]  # and live goes on after it

        # NACK one live packet 250+ behind the newest, and one of the replayed packets
        old_live, replayed = headers[50], headers[FRAMES + 1 + 60]
        nack = build_nack(0x1234, track.ssrc, [old_live.sequence, replayed.sequence])
        peer.handle_rtcp(browser.srtp.protect_rtcp(nack), browser.addr, now + FRAMES * 0.004)
        if with_rtx:
            await browser.settle(len(media), rtx=2)
            assert browser.refused == []
            for rtx_packet, original, hdr in zip(browser.rtx, (media[50], media[FRAMES + 61]),
                                                 (old_live, replayed), strict=True):
                h = parse_rtp(rtx_packet)
                assert h.ssrc == track.rtx_ssrc and h.payload_type == RTX_PT
                assert int.from_bytes(rtx_packet[12:14], "big") == hdr.sequence  # the OSN
                assert rtx_packet[14:] == original[12:]
                assert h.timestamp == hdr.timestamp
            assert peer.rtx_sent == 2
        else:
            await trio.sleep(0.2)
            browser.drain()
            assert peer.dropped["nack-too-old"] == 2  # beyond libsrtp's window, said so
        assert "srtp-protect" not in peer.dropped
        nursery.cancel_scope.cancel()
    mux.sock.close()
    browser.sock.close()


def test_seqmap_finds_live_and_inserted_packets_across_insertions() -> None:
    from rtp.resend import INSERTED_SECONDS, SeqMap
    from rtp.source import MediaPacket

    history = {n: MediaPacket("video", n, n * 10, bytes([n & 0xFF]), False, 0.0)
               for n in range(65530, 65536)} | {
        n: MediaPacket("video", n, n * 10, bytes([n]), False, 0.0) for n in range(0, 40)}
    m = SeqMap(delta=100, ts_delta=5)
    assert m.lookup((65533 + 100) & 0xFFFF, history.get) == (history[65533], 65533 * 10 + 5)
    # three packets go in before normalised seq 10: live packets from 10 on move up by 3
    extra = [(MediaPacket("video", 1, 10, b"x", True, 0.0), 999 + i) for i in range(3)]
    seqs = m.insert(10, extra, ts_shift=3, now=1.0)
    assert seqs == [110, 111, 112] and (m.delta, m.ts_delta) == (103, 8)
    assert m.lookup(111, history.get) == (extra[1][0], 1000)  # the inserted copy
    assert m.lookup(109, history.get) == (history[9], 95)  # before the insertion
    assert m.lookup(113, history.get) == (history[10], 108)  # after it
    assert m.lookup(5000, history.get) is None
    # the inserted copies are forgotten after INSERTED_SECONDS
    m.insert(20, [], now=1.0 + INSERTED_SECONDS + 0.1)
    assert m.lookup(111, history.get) is None
    assert m.lookup(113, history.get) == (history[10], 108)
