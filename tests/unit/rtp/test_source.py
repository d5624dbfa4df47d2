"""Source without sockets: normalisation across producer restarts, GOP cache, SPS/PPS
injection, history and garbage counting (``Source.on_datagram`` is the sans-IO entry)."""

from __future__ import annotations

import base64

from rtp.h264 import nal_types
from rtp.packet import build_rtp, parse_rtp
from rtp.sdp import Codec, SourceTrack
from rtp.source import MediaPacket, Source

SPS = bytes([0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xBF])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
IDR = bytes([0x65, 0x88, 0x84, 0x00, 0x33])
P_SLICE = bytes([0x41, 0x9A, 0x02, 0x03])
STAP_A = bytes([0x18]) + len(SPS).to_bytes(2, "big") + SPS + len(PPS).to_bytes(2, "big") + PPS


class Recorder:
    """A stand-in viewer that records what the Source fans out."""

    id = "recorder"

    def __init__(self) -> None:
        self.packets: list[MediaPacket] = []

    def forward(self, pkt: MediaPacket) -> None:
        self.packets.append(pkt)


def h264_source(with_sprop: bool = True) -> tuple[Source, Recorder]:
    source = Source("s", ("video", "audio"))
    fmtp = {"packetization-mode": "1", "profile-level-id": "42c01e"}
    if with_sprop:
        fmtp["sprop-parameter-sets"] = (
            base64.b64encode(SPS).decode() + "," + base64.b64encode(PPS).decode()
        )
    source.set_tracks({
        "video": SourceTrack("video", Codec(96, "H264", 90000, None, fmtp, [])),
        "audio": SourceTrack("audio", Codec(111, "opus", 48000, 2, {}, [])),
    })
    rec = Recorder()
    source.listeners.append(rec)  # type: ignore[arg-type]
    return source, rec


def feed(source: Source, kind: str, ssrc: int, seq: int, ts: int, payload: bytes,
         now: float, marker: bool = False) -> None:
    source.on_datagram(kind, build_rtp(96, seq, ts, ssrc, payload, marker=marker), now)


def test_restart_keeps_sequence_and_timestamps_continuous() -> None:
    source, rec = h264_source()
    for i in range(10):
        feed(source, "video", 1111, 65530 + i, 1000 + i * 3000, P_SLICE, now=i * 0.033)
    # the producer restarts: new SSRC, sequence and timestamp
    for i in range(5):
        feed(source, "video", 2222, 17 + i, 999_999 + i * 3000, P_SLICE, now=1.0 + i * 0.033)
    seqs = [p.seq for p in rec.packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False)), seqs
    ts = [p.ts for p in rec.packets]
    assert all(0 < (b - a) & 0xFFFFFFFF < 90000 for a, b in zip(ts, ts[1:], strict=False)), ts
    assert source.state["video"].restarts == 1


def test_gop_cache_starts_at_keyframe_and_keeps_its_parameter_sets() -> None:
    source, _ = h264_source()
    feed(source, "video", 1, 1, 0, P_SLICE, 0.0)  # before any keyframe: not cached
    assert source.state["video"].gop == []
    feed(source, "video", 1, 2, 3000, STAP_A, 0.1)
    feed(source, "video", 1, 3, 3000, IDR, 0.1, marker=True)
    feed(source, "video", 1, 4, 6000, P_SLICE, 0.2, marker=True)
    gop = source.state["video"].gop
    assert [nal_types(p.data[12:]) for p in gop] == [[7, 8], [5], [1]]
    feed(source, "video", 1, 5, 9000, STAP_A, 0.3)  # next keyframe resets the cache
    assert len(source.state["video"].gop) == 1
    assert source.state["video"].keyframes == 2


def test_idr_without_parameter_sets_gets_stap_a_injected() -> None:
    source, rec = h264_source(with_sprop=True)
    feed(source, "video", 1, 100, 3000, IDR, 0.0, marker=True)
    feed(source, "video", 1, 101, 6000, P_SLICE, 0.04, marker=True)
    assert [nal_types(p.data[12:]) for p in rec.packets] == [[7, 8], [5], [1]]
    seqs = [p.seq for p in rec.packets]
    assert seqs == [100, 101, 102]
    assert rec.packets[0].ts == rec.packets[1].ts
    hdr = parse_rtp(rec.packets[0].data)
    assert not hdr.marker
    assert source.state["video"].injected == 1


def test_no_injection_when_parameter_sets_are_in_band_or_unknown() -> None:
    source, rec = h264_source(with_sprop=True)
    feed(source, "video", 1, 1, 3000, STAP_A, 0.0)
    feed(source, "video", 1, 2, 3000, IDR, 0.0, marker=True)
    assert len(rec.packets) == 2
    source2, rec2 = h264_source(with_sprop=False)
    feed(source2, "video", 1, 1, 3000, IDR, 0.0, marker=True)
    assert len(rec2.packets) == 1


def test_history_lookup_and_expiry() -> None:
    source, rec = h264_source()
    for i in range(5):
        feed(source, "audio", 7, 500 + i, i * 960, b"\x01" * 40, now=i * 0.02)
    state = source.state["audio"]
    assert state.lookup(502, now=0.1) is rec.packets[2]
    assert state.lookup(502, now=5.0) is None  # older than the history window
    assert state.lookup(600, now=0.1) is None


def test_garbage_and_producer_rtcp_are_counted_not_forwarded() -> None:
    source, rec = h264_source()
    source.on_datagram("video", b"", 0.0)
    source.on_datagram("video", b"\x00" * 30, 0.0)
    source.on_datagram("video", b"\x80\xc8" + b"\x00" * 26, 0.0)  # an SR from FFmpeg
    source.on_datagram("video", b"\x90\x60" + b"\x00" * 10 + b"\x00\x01\x00\x05", 0.0)
    assert rec.packets == []
    assert source.dropped["producer-rtcp"] == 1
    assert sum(source.dropped.values()) == 4


def test_in_band_sps_fills_a_missing_profile_level_id_and_parameter_sets() -> None:
    source = Source("s", ("video",))
    source.set_tracks({"video": SourceTrack(
        "video", Codec(96, "H264", 90000, None, {"packetization-mode": "1"}, []))})
    feed(source, "video", 1, 1, 3000, STAP_A, 0.0)
    assert source.tracks["video"].profile_level_id == "42c01e"
    assert source.state["video"].sprop == [SPS, PPS]


def test_ingest_loss_is_counted() -> None:
    source, rec = h264_source()
    for seq in (10, 11, 15, 16):
        feed(source, "audio", 9, seq, seq * 960, b"\x01" * 40, now=seq * 0.02)
    assert source.state["audio"].lost == 3
    assert [p.seq for p in rec.packets] == [10, 11, 15, 16]  # gaps stay visible to viewers
