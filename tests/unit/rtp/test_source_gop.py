"""``rtp.Source``'s GOP cache (what a new WebRTC viewer starts on and a PLI replays), written
from its behaviour before it ran on the shared relay GOP cache: starts at a keyframe, one
keyframe access unit spread over several packets is one GOP start, the packet bound and what
happens on overflow, a producer restart, audio has none. Sans-IO (``Source.on_datagram``)."""

from __future__ import annotations

from rtp.h264 import nal_types
from rtp.packet import build_rtp
from rtp.sdp import Codec, SourceTrack
from rtp.source import GOP_MAX_PACKETS, Source

SPS = bytes([0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xBF])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
STAP_A = bytes([0x18]) + len(SPS).to_bytes(2, "big") + SPS + len(PPS).to_bytes(2, "big") + PPS
IDR = bytes([0x65, 0x88, 0x84, 0x00, 0x33])
P_SLICE = bytes([0x41, 0x9A, 0x02, 0x03])


class Feeder:
    def __init__(self) -> None:
        self.source = Source("s", ("video", "audio"))
        fmtp = {"packetization-mode": "1", "profile-level-id": "42c01e"}
        self.source.set_tracks({
            "video": SourceTrack("video", Codec(96, "H264", 90000, None, fmtp, [])),
            "audio": SourceTrack("audio", Codec(111, "opus", 48000, 2, {}, [])),
        })
        self.seq = 0
        self.ssrc = 1
        self.now = 0.0

    def video(self, ts: int, payload: bytes, marker: bool = True) -> None:
        self.seq += 1
        self.now += 0.001
        self.source.on_datagram("video", build_rtp(96, self.seq & 0xFFFF, ts, self.ssrc,
                                                   payload, marker=marker), self.now)

    def keyframe(self, ts: int) -> None:
        self.video(ts, STAP_A, marker=False)
        self.video(ts, IDR)

    @property
    def gop(self) -> list:  # type: ignore[type-arg]
        return list(self.source.state["video"].gop)


def test_starts_at_a_keyframe_and_one_access_unit_is_one_start() -> None:
    f = Feeder()
    f.video(0, P_SLICE)
    assert f.gop == []
    f.keyframe(3000)  # STAP-A and IDR: both "keyframe" packets of one access unit
    f.video(6000, P_SLICE)
    assert [nal_types(p.data[12:]) for p in f.gop] == [[7, 8], [5], [1]]
    assert all(p.keyframe for p in f.gop[:2]) and not f.gop[2].keyframe
    assert f.source.state["video"].keyframes == 1
    f.keyframe(9000)
    assert [nal_types(p.data[12:]) for p in f.gop] == [[7, 8], [5]]
    assert f.source.state["video"].keyframes == 2
    assert f.source.stats()["tracks"]["video"]["gop_packets"] == 2  # type: ignore[index]


def test_gop_is_bounded_in_packets_and_after_overflow_waits_for_the_next_keyframe() -> None:
    f = Feeder()
    f.keyframe(0)
    for i in range(GOP_MAX_PACKETS - 2):
        f.video(3000 + i, P_SLICE)
    assert len(f.gop) == GOP_MAX_PACKETS  # full, not over
    f.video(999_000, P_SLICE)
    assert f.gop == []  # one more: the cache is dropped
    f.video(999_100, P_SLICE)
    assert f.gop == []  # and stays empty until a keyframe
    f.keyframe(1_000_000)
    assert len(f.gop) == 2 and f.gop[0].keyframe
    assert f.source.state["video"].keyframes == 2


def test_a_producer_restart_empties_the_gop() -> None:
    f = Feeder()
    f.keyframe(0)
    f.video(3000, P_SLICE)
    assert len(f.gop) == 3
    f.ssrc = 2  # FFmpeg restarted: new SSRC
    f.video(50, P_SLICE)
    assert f.gop == []
    f.keyframe(3050)
    assert len(f.gop) == 2


def test_audio_has_no_gop_cache() -> None:
    f = Feeder()
    f.source.on_datagram("audio", build_rtp(111, 1, 0, 5, b"\x01" * 20, marker=True), 0.0)
    assert list(f.source.state["audio"].gop) == []
