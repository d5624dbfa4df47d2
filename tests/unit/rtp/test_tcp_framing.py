"""RFC 4571 framing (rtp.tcp_framing): decoder limits, the byte-bounded queue, the keyframe gate."""

from __future__ import annotations

import pytest

from rtp.errors import ParseError
from rtp.tcp_framing import MAX_FRAME, FrameDecoder, KeyframeGate, SendQueue, encode


def test_encode_prefixes_the_length() -> None:
    assert encode(b"abc") == b"\x00\x03abc"
    with pytest.raises(ValueError):
        encode(bytes(70000))


def test_frames_split_anywhere_are_reassembled() -> None:
    packets = [bytes([i]) * (i * 37 + 1) for i in range(1, 30)]
    stream = b"".join(encode(p) for p in packets)
    for step in (1, 2, 3, 7, 100, len(stream)):
        dec = FrameDecoder()
        got = []
        for i in range(0, len(stream), step):
            got += dec.feed(stream[i:i + step])
        assert got == packets
        assert dec.buffered == 0
        assert dec.frames == len(packets)


def test_a_frame_too_large_or_empty_fails_the_stream() -> None:
    dec = FrameDecoder()
    with pytest.raises(ParseError) as err:
        dec.feed((MAX_FRAME + 1).to_bytes(2, "big") + b"x")
    assert err.value.reason == "tcp-frame-too-large"
    with pytest.raises(ParseError):
        dec.feed(encode(b"ok"))  # stays failed
    with pytest.raises(ParseError) as err:
        FrameDecoder().feed(b"\x00\x00")
    assert err.value.reason == "tcp-frame-empty"


def test_the_decoder_holds_at_most_one_partial_frame() -> None:
    dec = FrameDecoder(max_frame=100)
    assert dec.feed(encode(bytes(100))[:50]) == []
    assert dec.buffered == 50  # a slowloris costs at most max_frame + 2 bytes


def test_send_queue_is_byte_bounded_and_keeps_frames_whole() -> None:
    q = SendQueue(limit=100)
    assert q.push(encode(bytes(40)))  # 42
    assert q.push(encode(bytes(40)))  # 84
    assert not q.push(encode(bytes(40)))  # would be 126: refused whole
    assert (q.bytes, q.dropped, q.dropped_bytes) == (84, 1, 42)
    q.push_tail(b"t" * 30)  # a started frame's rest is always taken
    assert q.bytes == 114
    data = q.chunk()
    assert len(data) == 114
    q.consume(50)
    assert q.bytes == 64 and q.chunk() == data[50:]
    q.consume(64)
    assert q.bytes == 0 and q.chunk() == b""


def test_gate_skips_video_to_the_next_keyframe_after_an_overflow() -> None:
    gate = KeyframeGate(low_water=100)
    assert gate.admit(True, False, 10_000)  # not congested: everything passes
    gate.overflowed()
    assert gate.skipping and gate.skips == 1
    assert not gate.admit(True, False, 50)  # a delta frame: never, even when drained
    assert not gate.admit(True, True, 500)  # a keyframe while still above low water
    assert not gate.admit(False, False, 500)  # audio too, while above low water
    assert gate.admit(False, False, 50)  # audio once drained
    assert gate.admit(True, True, 50)  # the keyframe after draining: video again
    assert not gate.skipping
    assert gate.admit(True, False, 50)
    assert gate.skipped == 3
