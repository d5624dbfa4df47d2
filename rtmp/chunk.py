"""The RTMP chunk stream: messages split into chunks and back, sans-IO.

:class:`ChunkReader` turns received bytes into complete :class:`Message` objects (all four
chunk header formats, 1/2/3-byte basic headers, extended timestamps) and applies the two
control messages that change parsing itself — Set Chunk Size (1) and Abort (2) — which are
still returned to the caller. :func:`encode_message` / :class:`ChunkWriter` do the reverse
(format 0 for the first chunk of every message, format 3 for the rest).

Limits (hostile peers): a message longer than ``max_message_size``, more than
``max_chunk_streams`` chunk streams with a message in flight, more than
``max_pending_bytes`` buffered in unfinished messages, or a chunk size outside
``MIN_CHUNK_SIZE``..``MAX_CHUNK_SIZE`` raise :class:`~rtmp.errors.RtmpError` /
:class:`~rtmp.errors.LimitExceeded`; a format 1–3 header on a chunk stream never opened with
format 0 raises ``chunk-no-header``. After an error the reader is unusable (drop the
connection).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LimitExceeded, RtmpError

__all__ = [
    "DEFAULT_CHUNK_SIZE", "MAX_CHUNK_SIZE", "MIN_CHUNK_SIZE", "ChunkReader", "ChunkWriter",
    "Message", "MessageType", "encode_message",
]

DEFAULT_CHUNK_SIZE = 128
MIN_CHUNK_SIZE = 128  # real clients never go below the default; 1-byte chunks would be a CPU DoS
MAX_CHUNK_SIZE = 0xFFFFFF  # a chunk can never be longer than the longest message (24-bit length)
EXTENDED = 0xFFFFFF


class MessageType:
    """RTMP message type ids."""

    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


@dataclass(slots=True)
class Message:
    """One complete RTMP message."""

    type_id: int
    stream_id: int
    timestamp: int  # milliseconds, 32-bit wrapping
    payload: bytes
    csid: int = 3


@dataclass(slots=True)
class _Stream:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    has_header: bool = False
    partial: bytearray | None = None


class ChunkReader:
    """Reassembles messages from chunks. ``receive_data(data) -> list[Message]``."""

    def __init__(
        self, *, max_message_size: int = 8 * 1024 * 1024, max_chunk_streams: int = 32,
        max_pending_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_message_size = max_message_size
        self.max_chunk_streams = max_chunk_streams
        self.max_pending_bytes = max_pending_bytes
        self.bytes_received = 0
        self._buf = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._pending = 0

    def receive_data(self, data: bytes) -> list[Message]:
        self.bytes_received += len(data)
        self._buf += data
        out: list[Message] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        while True:
            start = pos
            if pos >= n:
                break
            b0 = buf[pos]
            fmt = b0 >> 6
            csid = b0 & 0x3F
            pos += 1
            if csid == 0:
                if pos + 1 > n:
                    pos = start
                    break
                csid = 64 + buf[pos]
                pos += 1
            elif csid == 1:
                if pos + 2 > n:
                    pos = start
                    break
                csid = 64 + buf[pos] + 256 * buf[pos + 1]
                pos += 2
            header_len = (11, 7, 3, 0)[fmt]
            if pos + header_len > n:
                pos = start
                break
            st = self._streams.get(csid)
            if st is None:
                if len(self._streams) >= self.max_chunk_streams:
                    raise LimitExceeded("chunk-streams", f"more than {self.max_chunk_streams} chunk streams")
                st = self._streams[csid] = _Stream()
            if fmt != 0 and not st.has_header:
                raise RtmpError("chunk-no-header", f"format {fmt} chunk on chunk stream {csid} without a previous header")
            ts_field = -1
            if fmt <= 2:
                ts_field = int.from_bytes(buf[pos:pos + 3], "big")
            if fmt <= 1:
                length = int.from_bytes(buf[pos + 3:pos + 6], "big")
                type_id = buf[pos + 6]
            else:
                length, type_id = st.length, st.type_id
            stream_id = int.from_bytes(buf[pos + 7:pos + 11], "little") if fmt == 0 else st.stream_id
            pos += header_len
            extended = st.extended if fmt == 3 else ts_field == EXTENDED
            if extended:
                if pos + 4 > n:
                    pos = start
                    break
                ext = int.from_bytes(buf[pos:pos + 4], "big")
                pos += 4
                if fmt != 3:
                    ts_field = ext
            new_message = st.partial is None
            if fmt <= 1 and not new_message:
                raise RtmpError("chunk-interrupted", f"new message header on chunk stream {csid} inside a message")
            if new_message and length > self.max_message_size:
                raise LimitExceeded("message-size", f"message of {length} bytes (limit {self.max_message_size})")
            have = 0 if new_message else len(st.partial)  # type: ignore[arg-type]
            take = min(self.chunk_size, length - have)
            if pos + take > n:
                pos = start
                break
            # the header is complete: commit it
            if fmt == 0:
                st.timestamp = ts_field
                st.delta = 0
            elif fmt in (1, 2):
                st.delta = ts_field
                if new_message:
                    st.timestamp = (st.timestamp + ts_field) & 0xFFFFFFFF
            elif new_message:  # fmt 3 starting a message: repeat the previous delta
                st.timestamp = (st.timestamp + st.delta) & 0xFFFFFFFF
            if fmt != 3:
                st.extended = extended
            st.length, st.type_id, st.stream_id, st.has_header = length, type_id, stream_id, True
            if new_message and take == length:
                payload = bytes(buf[pos:pos + take])
                pos += take
                self._complete(Message(type_id, stream_id, st.timestamp, payload, csid), out)
                continue
            if new_message:
                st.partial = bytearray()
            self._pending += take
            if self._pending > self.max_pending_bytes:
                raise LimitExceeded("pending-bytes", f"more than {self.max_pending_bytes} bytes in unfinished messages")
            st.partial += buf[pos:pos + take]  # type: ignore[operator]
            pos += take
            if len(st.partial) == length:  # type: ignore[arg-type]
                payload = bytes(st.partial)  # type: ignore[arg-type]
                st.partial = None
                self._pending -= length
                self._complete(Message(type_id, stream_id, st.timestamp, payload, csid), out)
        del buf[:pos]
        return out

    def _complete(self, msg: Message, out: list[Message]) -> None:
        if msg.type_id == MessageType.SET_CHUNK_SIZE:
            if len(msg.payload) < 4:
                raise RtmpError("chunk-size", "Set Chunk Size message shorter than 4 bytes")
            size = int.from_bytes(msg.payload[:4], "big")
            if size & 0x80000000 or not MIN_CHUNK_SIZE <= size:
                raise RtmpError("chunk-size", f"chunk size {size} outside {MIN_CHUNK_SIZE}..2^31-1")
            self.chunk_size = min(size, MAX_CHUNK_SIZE)
        elif msg.type_id == MessageType.ABORT:
            if len(msg.payload) < 4:
                raise RtmpError("abort-short", "Abort message shorter than 4 bytes")
            st = self._streams.get(int.from_bytes(msg.payload[:4], "big"))
            if st is not None and st.partial is not None:
                self._pending -= len(st.partial)
                st.partial = None
        out.append(msg)


def _basic_header(fmt: int, csid: int) -> bytes:
    if 2 <= csid <= 63:
        return bytes([(fmt << 6) | csid])
    if 64 <= csid <= 319:
        return bytes([fmt << 6, csid - 64])
    if 320 <= csid <= 65599:
        rest = csid - 64
        return bytes([(fmt << 6) | 1, rest & 0xFF, rest >> 8])
    raise ValueError(f"chunk stream id {csid} outside 2..65599")


def message_header(msg_type: int, stream_id: int, timestamp: int, length: int, csid: int) -> bytes:
    """The format-0 chunk header of a message (basic header, 11 bytes, extended timestamp)."""
    timestamp &= 0xFFFFFFFF
    ext = timestamp >= EXTENDED
    head = (
        _basic_header(0, csid)
        + (EXTENDED if ext else timestamp).to_bytes(3, "big")
        + length.to_bytes(3, "big")
        + bytes([msg_type])
        + stream_id.to_bytes(4, "little")
    )
    return head + timestamp.to_bytes(4, "big") if ext else head


def continuation(payload: bytes, chunk_size: int, csid: int, timestamp: int = 0) -> bytes:
    """Everything after the first chunk's data: format-3 headers and the remaining pieces.

    It depends on the timestamp only when it needs an extended timestamp (>= 2^24-1 ms), so
    a fan-out can build it once per message and reuse it for every receiver.
    """
    if len(payload) <= chunk_size:
        return b""
    head = _basic_header(3, csid)
    timestamp &= 0xFFFFFFFF
    if timestamp >= EXTENDED:
        head += timestamp.to_bytes(4, "big")
    view = memoryview(payload)
    return b"".join(
        head + view[i:i + chunk_size] for i in range(chunk_size, len(payload), chunk_size)
    )


def encode_message(msg: Message, chunk_size: int) -> bytes:
    """One message as chunks (format 0, then format 3 with the same csid)."""
    payload = msg.payload
    if len(payload) > 0xFFFFFF:
        raise ValueError("RTMP messages are at most 16 MiB")
    return (
        message_header(msg.type_id, msg.stream_id, msg.timestamp, len(payload), msg.csid)
        + payload[:chunk_size]
        + continuation(payload, chunk_size, msg.csid, msg.timestamp)
    )


class ChunkWriter:
    """Outgoing chunking state (the chunk size announced to the peer)."""

    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.bytes_sent = 0

    def encode(self, msg: Message) -> bytes:
        data = encode_message(msg, self.chunk_size)
        self.bytes_sent += len(data)
        return data
