"""rtmp.media: legacy and enhanced (FourCC) audio/video tag classification."""

from __future__ import annotations

import pytest

from rtmp.errors import RtmpError
from rtmp.media import parse_audio, parse_video


def test_media_classification_legacy_and_enhanced() -> None:
    avc_seq = parse_video(b"\x17\x00\x00\x00\x00\x01\x42")
    assert (avc_seq.codec, avc_seq.sequence_header, avc_seq.keyframe) == ("h264", True, False)
    assert parse_video(b"\x17\x01\x00\x00\x00").keyframe
    inter = parse_video(b"\x27\x01\x00\x00\x00")
    assert inter.codec == "h264" and not inter.keyframe
    assert parse_video(b"\x17\x02\x00\x00\x00").sequence_end
    # Enhanced RTMP: IsExHeader | frame type 1 | packet type, then FourCC
    hevc_seq = parse_video(b"\x90hvc1\x01")
    assert (hevc_seq.codec, hevc_seq.sequence_header, hevc_seq.enhanced) == ("hevc", True, True)
    av1_key = parse_video(b"\x91av01\x00")
    assert (av1_key.codec, av1_key.keyframe) == ("av1", True)
    vp9_inter = parse_video(b"\xa3vp09")
    assert (vp9_inter.codec, vp9_inter.keyframe) == ("vp9", False)
    assert parse_video(b"\x1c\x01\x00\x00\x00").codec == "hevc"  # legacy id 12
    assert parse_audio(b"\xaf\x00\x12\x10").sequence_header
    assert not parse_audio(b"\xaf\x01\x00").sequence_header
    assert parse_audio(b"\x90Opus").codec == "opus"
    assert parse_audio(b"\x2f").codec == "mp3"
    for bad in (b"", b"\x17", b"\x90hv"):
        with pytest.raises(RtmpError):
            parse_video(bad)
    for bad in (b"", b"\xaf", b"\x90Op"):
        with pytest.raises(RtmpError):
            parse_audio(bad)


