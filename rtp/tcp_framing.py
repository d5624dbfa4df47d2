"""RFC 4571 framing for ICE-TCP (RFC 6544), sans-IO: bytes in → frames out, frames in →
bytes out, with limits.

Over an ICE-TCP connection every STUN, DTLS, SRTP and SRTCP packet travels as one *frame*:
a 16-bit big-endian length and then the packet (RFC 4571 §2). This module has no sockets:

* :func:`encode` frames one packet.
* :class:`FrameDecoder` turns received bytes (any split) into whole frames; a frame larger
  than ``max_frame`` (a peer sends nothing bigger than an MTU-sized packet) or a zero-length
  one is a :class:`~rtp.errors.ParseError` (``tcp-frame-too-large``, ``tcp-frame-empty``):
  the connection is garbage and must be closed. It never buffers more than one frame.
* :class:`SendQueue` is the byte-bounded outbound buffer of one connection: what the kernel
  did not take at once waits here; a frame that would take it past ``limit`` bytes is
  refused (counted), never half-queued, so the byte stream always stays well-framed.
* :class:`KeyframeGate` is the slow-viewer policy in front of the queue: once the queue
  overflowed, video is skipped up to the next keyframe (and until the queue drained to its
  low-water mark), audio while the queue is above it; every skipped packet is counted.

Everything is synchronous and pure; nothing here can block or be cancelled.
"""

from __future__ import annotations

import collections
import struct

from .errors import ParseError

__all__ = ["MAX_FRAME", "FrameDecoder", "KeyframeGate", "SendQueue", "encode"]

#: Largest frame accepted from a viewer: STUN, DTLS and SRTCP from browsers stay below an
#: MTU; 4 KiB leaves room and bounds what garbage can make us buffer.
MAX_FRAME = 4096
#: Largest frame we send (the RFC 4571 length field's limit).
MAX_SEND_FRAME = 0xFFFF
_LEN = struct.Struct("!H")


def encode(packet: bytes) -> bytes:
    """One RFC 4571 frame: the 16-bit length, then ``packet``. ValueError if > 65535 bytes."""
    if len(packet) > MAX_SEND_FRAME:
        raise ValueError(f"a {len(packet)}-byte packet does not fit an RFC 4571 frame")
    return _LEN.pack(len(packet)) + packet


class FrameDecoder:
    """Reassembles RFC 4571 frames from a byte stream.

    ``feed(data)`` returns the frames completed by ``data`` (possibly none); at most one
    partial frame (≤ ``max_frame`` + 2 bytes) is kept between calls. Raises ParseError
    ``tcp-frame-too-large`` / ``tcp-frame-empty``; after that the decoder stays failed.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self.frames = 0
        self.failed = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self.failed:
            raise ParseError("tcp-failed", "the stream was already malformed")
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            (length,) = _LEN.unpack_from(buf, pos)
            if length == 0:
                self.failed = True
                raise ParseError("tcp-frame-empty", "zero-length frame")
            if length > self.max_frame:
                self.failed = True
                raise ParseError("tcp-frame-too-large",
                                 f"{length} bytes (limit {self.max_frame})")
            if end - pos - 2 < length:
                break
            out.append(bytes(buf[pos + 2:pos + 2 + length]))
            pos += 2 + length
        if pos:
            del buf[:pos]
        self.frames += len(out)
        return out


class SendQueue:
    """Byte-bounded outbound buffer of one connection (framed bytes, in order).

    :meth:`push` queues whole frames while the total stays ≤ ``limit`` bytes, else refuses
    the frame (``dropped``/``dropped_bytes`` count it); :meth:`push_tail` queues the unsent
    rest of a frame the kernel took only part of (always accepted: the stream must stay
    framed). :meth:`chunk` gives what to write next, :meth:`consume` what the kernel took.
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("the send queue needs a positive limit")
        self.limit = limit
        self._chunks: collections.deque[bytes] = collections.deque()
        self.bytes = 0
        self.dropped = 0
        self.dropped_bytes = 0
        #: the largest number of bytes ever queued (tests, stats)
        self.peak = 0

    def __len__(self) -> int:
        return self.bytes

    def fits(self, size: int) -> bool:
        """True if a frame of ``size`` bytes (framing included) would be accepted."""
        return self.bytes + size <= self.limit

    def push(self, framed: bytes) -> bool:
        """Queue one framed packet; False (counted) when it would exceed the limit."""
        if self.bytes + len(framed) > self.limit:
            self.dropped += 1
            self.dropped_bytes += len(framed)
            return False
        self._append(framed)
        return True

    def push_tail(self, rest: bytes) -> None:
        """Queue the unsent end of a frame whose beginning is already on the wire."""
        self._append(rest)

    def _append(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self.bytes += len(data)
            if self.bytes > self.peak:
                self.peak = self.bytes

    def chunk(self, max_bytes: int = 256 * 1024) -> bytes:
        """The next bytes to write (joined from the head, at most about ``max_bytes``)."""
        if not self._chunks:
            return b""
        if len(self._chunks) == 1 or len(self._chunks[0]) >= max_bytes:
            return self._chunks[0]
        parts: list[bytes] = []
        size = 0
        for part in self._chunks:
            if size and size + len(part) > max_bytes:
                break
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    def consume(self, sent: int) -> None:
        """Forget the first ``sent`` bytes (written to the kernel)."""
        chunks = self._chunks
        self.bytes -= sent
        while sent and chunks:
            head = chunks[0]
            if len(head) <= sent:
                sent -= len(head)
                chunks.popleft()
            else:
                chunks[0] = head[sent:]
                sent = 0

    def clear(self) -> None:
        self._chunks.clear()
        self.bytes = 0


class KeyframeGate:
    """Which media packets a congested connection still takes (a slow TCP viewer).

    Normally everything passes. After :meth:`overflowed` (the queue refused a frame) the gate
    *skips*: video packets are dropped until one that starts a keyframe arrives while the
    queue holds at most ``low_water`` bytes — then video flows again from that keyframe, so
    the viewer decodes again at once instead of showing corrupt frames; audio is dropped
    while the queue is above ``low_water``. ``skips`` counts overflows, ``skipped`` the
    packets dropped here.
    """

    def __init__(self, low_water: int) -> None:
        self.low_water = low_water
        self.skipping = False
        self.skips = 0
        self.skipped = 0

    def overflowed(self) -> None:
        if not self.skipping:
            self.skipping = True
            self.skips += 1

    def admit(self, video: bool, keyframe: bool, queued: int) -> bool:
        """True if a packet (``video`` or audio, ``keyframe`` start) may be sent now with
        ``queued`` bytes waiting."""
        if not self.skipping:
            return True
        if queued <= self.low_water:
            if video and keyframe:
                self.skipping = False
                return True
            if not video:
                return True
        self.skipped += 1
        return False
