"""rtmp.chunk: every chunk header format, interleaving, extended timestamps, chunk size, limits."""

from __future__ import annotations

import pytest

from rtmp.chunk import ChunkReader, Message, MessageType, encode_message
from rtmp.errors import LimitExceeded, RtmpError


def _chunks(fmt: int, csid: int, header: bytes, body: bytes) -> bytes:
    return bytes([(fmt << 6) | csid]) + header + body


def test_chunk_reader_all_header_formats_and_interleaving() -> None:
    reader = ChunkReader()
    # fmt 0: ts 1000, len 200 (two chunks at 128), video, stream 1
    hdr0 = (1000).to_bytes(3, "big") + (200).to_bytes(3, "big") + b"\x09" + (1).to_bytes(4, "little")
    body = bytes(range(200))
    data = _chunks(0, 6, hdr0, body[:128])
    # an audio message on another chunk stream interleaved between the two video chunks
    hdr_a = (1010).to_bytes(3, "big") + (3).to_bytes(3, "big") + b"\x08" + (1).to_bytes(4, "little")
    data += _chunks(0, 4, hdr_a, b"\xaf\x01z")
    data += _chunks(3, 6, b"", body[128:])
    # fmt 1 (delta 40, new length/type), fmt 2 (delta 40), fmt 3 (repeats delta 40)
    data += _chunks(1, 6, (40).to_bytes(3, "big") + (2).to_bytes(3, "big") + b"\x09", b"\x27\x01")
    data += _chunks(2, 6, (40).to_bytes(3, "big"), b"\x27\x01")
    data += _chunks(3, 6, b"", b"\x27\x01")
    msgs: list[Message] = []
    for i in range(0, len(data), 7):  # arbitrary split points
        msgs += reader.receive_data(data[i:i + 7])
    assert [(m.type_id, m.timestamp, len(m.payload)) for m in msgs] == [
        (8, 1010, 3), (9, 1000, 200), (9, 1040, 2), (9, 1080, 2), (9, 1120, 2)]
    assert msgs[1].payload == body and msgs[1].stream_id == 1


def test_chunk_round_trip_extended_timestamp_and_chunk_size() -> None:
    reader = ChunkReader()
    big = bytes(range(256)) * 40
    set_size = encode_message(Message(MessageType.SET_CHUNK_SIZE, 0, 0, (4096).to_bytes(4, "big"), 2), 128)
    msg = Message(MessageType.VIDEO, 1, 0x1234567, big, 6)  # > 2^24-1 ms: extended
    out = reader.receive_data(set_size + encode_message(msg, 4096) + encode_message(
        Message(MessageType.AUDIO, 1, 5, b"\xaf\x01", 300), 4096))
    assert reader.chunk_size == 4096
    assert out[1].timestamp == 0x1234567 and out[1].payload == big
    assert out[2].csid == 300 and out[2].payload == b"\xaf\x01"


def test_chunk_reader_limits() -> None:
    hdr = (0).to_bytes(3, "big") + (0xFFFFFF).to_bytes(3, "big") + b"\x09" + bytes(4)
    with pytest.raises(LimitExceeded) as info:
        ChunkReader(max_message_size=1 << 20).receive_data(_chunks(0, 6, hdr, b""))
    assert info.value.reason == "message-size"
    with pytest.raises(RtmpError) as info2:  # chunk size below 128
        ChunkReader().receive_data(encode_message(
            Message(MessageType.SET_CHUNK_SIZE, 0, 0, (1).to_bytes(4, "big"), 2), 128))
    assert info2.value.reason == "chunk-size"
    with pytest.raises(RtmpError) as info3:  # top bit set
        ChunkReader().receive_data(encode_message(
            Message(MessageType.SET_CHUNK_SIZE, 0, 0, b"\x80\x00\x10\x00", 2), 128))
    assert info3.value.reason == "chunk-size"
    huge = ChunkReader()  # a huge (legal) chunk size is clamped, messages still bounded
    huge.receive_data(encode_message(Message(MessageType.SET_CHUNK_SIZE, 0, 0, b"\x7f\xff\xff\xff", 2), 128))
    assert huge.chunk_size == 0xFFFFFF
    reader = ChunkReader(max_chunk_streams=4)
    partial = (0).to_bytes(3, "big") + (1000).to_bytes(3, "big") + b"\x09" + bytes(4)
    with pytest.raises(LimitExceeded) as info4:
        reader.receive_data(b"".join(_chunks(0, c, partial, b"x" * 128) for c in range(3, 9)))
    assert info4.value.reason == "chunk-streams"
    with pytest.raises(RtmpError) as info5:
        ChunkReader().receive_data(_chunks(3, 5, b"", b"x"))
    assert info5.value.reason == "chunk-no-header"
    pending = ChunkReader(max_message_size=1000, max_pending_bytes=2000)
    with pytest.raises(LimitExceeded) as info6:
        pending.receive_data(b"".join(_chunks(0, c, partial, b"x" * 128) for c in range(3, 30)))
    assert info6.value.reason == "pending-bytes"


