"""rtp.vp8: payload descriptor and keyframe detection (real FFmpeg RTP: tests/integration/rtp/test_vp8.py)."""

from __future__ import annotations

import pytest

from rtp.errors import ParseError
from rtp.vp8 import descriptor_size, is_keyframe

KEY_HEADER = b"\x10\x02\x00\x9d\x01\x2a"  # VP8 key frame: P bit clear, start code 9d 01 2a


INTER_HEADER = b"\x31\x02\x00"  # P bit set


@pytest.mark.parametrize(
    ("payload", "size"),
    [
        (b"\x10", 1),
        (b"\x90\x00", 2),  # X with no optional fields
        (b"\x90\x80\x05", 3),  # 7-bit PictureID
        (b"\x90\x80\x85\x05", 4),  # 15-bit PictureID
        (b"\x90\xf0\x85\x05\x01\x02", 6),  # PictureID, TL0PICIDX, TID/KEYIDX
        (b"\x90\x20\x40", 3),  # K only
    ],
)
def test_descriptor_size(payload: bytes, size: int) -> None:
    assert descriptor_size(payload) == size


@pytest.mark.parametrize("payload", [b"", b"\x90", b"\x90\x80", b"\x90\xc0\x85\x05"])
def test_descriptor_truncated(payload: bytes) -> None:
    with pytest.raises(ParseError) as info:
        descriptor_size(payload)
    assert info.value.reason == "vp8-short"


def test_is_keyframe() -> None:
    assert is_keyframe(b"\x10" + KEY_HEADER[1:])
    assert is_keyframe(b"\x90\x80\x85\x05" + b"\x00\x02\x00")
    assert not is_keyframe(b"\x10" + INTER_HEADER)
    assert not is_keyframe(b"\x00" + KEY_HEADER[1:])  # not the start of a frame
    assert not is_keyframe(b"\x11" + KEY_HEADER[1:])  # S=1 but partition 1
    assert not is_keyframe(b"\x10")  # nothing behind the descriptor
    assert not is_keyframe(b"\x90\x80")  # truncated descriptor
    assert not is_keyframe(b"")
