"""RTP fixed header (RFC 3550 §5.1): parse, rewrite and build. Sans-IO.

The forwarder never decodes media: it reads the fixed header once per packet from the
producer and, per viewer, rewrites payload type, sequence number, timestamp and SSRC while
keeping the marker bit, CSRCs, header extensions and payload untouched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import ParseError

__all__ = ["RtpHeader", "build_rtp", "parse_rtp", "rewrite"]

_FIXED = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The fields of an RTP header the forwarder needs.

    ``header_size`` counts the fixed header, CSRCs and the header extension, so
    ``data[header_size:len(data) - padding]`` is the payload.
    """

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    header_size: int
    padding: int = 0
    version: int = 2


def parse_rtp(data: bytes) -> RtpHeader:
    """Parse the RTP header of ``data``. Raises ParseError (reason ``rtp-*``) on garbage."""
    size = len(data)
    if size < 12:
        raise ParseError("rtp-short", f"{size} bytes")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != 2:
        raise ParseError("rtp-version", f"version {b0 >> 6}")
    pt = b1 & 0x7F
    if 72 <= pt <= 76:
        raise ParseError("rtp-is-rtcp", f"payload type {pt} is in the RTCP range")
    header = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if size < header + 4:
            raise ParseError("rtp-short", "truncated header extension")
        ext_words = (data[header + 2] << 8) | data[header + 3]
        header += 4 + 4 * ext_words
    if size < header:
        raise ParseError("rtp-short", f"header of {header} bytes in {size}")
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or header + padding > size:
            raise ParseError("rtp-padding", f"padding {padding} in {size} bytes")
    return RtpHeader(
        marker=bool(b1 & 0x80),
        payload_type=pt,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        header_size=header,
        padding=padding,
    )


def rewrite(data: bytes, payload_type: int, sequence: int, timestamp: int, ssrc: int) -> bytes:
    """A copy of the RTP packet ``data`` with new PT, sequence, timestamp and SSRC.

    The marker bit and everything after the SSRC field are kept. ``data`` must already be
    a valid RTP packet (no checks: this is the per-viewer hot path).
    """
    buf = bytearray(data)
    buf[1] = (buf[1] & 0x80) | payload_type
    _SEQ_TS_SSRC.pack_into(buf, 2, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
    return bytes(buf)


def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    *,
    marker: bool = False,
) -> bytes:
    """Build a plain RTP packet (no CSRC, extension or padding)."""
    return (
        _FIXED.pack(
            0x80,
            (0x80 if marker else 0) | (payload_type & 0x7F),
            sequence & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc & 0xFFFFFFFF,
        )
        + payload
    )
