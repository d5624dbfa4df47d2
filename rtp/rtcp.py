"""RTCP (RFC 3550, RFC 4585) parse and build, sans-IO.

``parse_rtcp`` splits a compound packet and returns the reports and feedback the
forwarder acts on; other packet types (SDES, APP, REMB, TWCC …) are skipped. Garbage
raises :class:`~rtp.errors.ParseError` (reasons ``rtcp-*``), never another exception.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import ParseError

__all__ = [
    "Bye", "Fir", "Nack", "Pli", "ReceiverReport", "ReportBlock", "RtcpPacket", "SenderReport",
    "build_fir", "build_nack", "build_pli", "build_rr", "build_sdes_cname", "build_sr",
    "ntp_to_unix", "parse_rtcp", "rtt_from_report", "unix_to_ntp",
]

SR, RR, SDES, BYE, RTPFB, PSFB = 200, 201, 202, 203, 205, 206
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01

_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IB3sIIII")


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Nack:
    sender_ssrc: int
    media_ssrc: int
    lost: list[int]


@dataclass(frozen=True, slots=True)
class Pli:
    sender_ssrc: int
    media_ssrc: int


@dataclass(frozen=True, slots=True)
class Fir:
    sender_ssrc: int
    entries: list[tuple[int, int]]  # (ssrc, command sequence number)


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: list[int]


RtcpPacket = SenderReport | ReceiverReport | Nack | Pli | Fir | Bye


def unix_to_ntp(t: float) -> int:
    """64-bit NTP timestamp of unix time ``t``."""
    seconds = int(t)
    fraction = int((t - seconds) * (1 << 32)) & 0xFFFFFFFF
    return (((seconds + NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32) | fraction


def ntp_to_unix(ntp: int) -> float:
    """Unix time of a 64-bit NTP timestamp."""
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / (1 << 32)


def rtt_from_report(lsr: int, dlsr: int, now: float) -> float | None:
    """Round-trip time in seconds from a report block's LSR/DLSR received at unix time ``now``
    (RFC 3550 6.4.1: arrival - LSR - DLSR in 1/65536 s); None without an SR echoed (LSR 0)
    or when the result is implausible (negative, i.e. clock trouble, or over a minute)."""
    if lsr == 0:
        return None
    arrival = (unix_to_ntp(now) >> 16) & 0xFFFFFFFF
    rtt = (arrival - lsr - dlsr) & 0xFFFFFFFF
    if rtt > 60 * 65536:
        return None
    return rtt / 65536


def _blocks(data: bytes, pos: int, count: int, end: int) -> list[ReportBlock]:
    if pos + count * _BLOCK.size > end:
        raise ParseError("rtcp-length", "report blocks exceed the packet")
    out = []
    for _ in range(count):
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        lost_i = int.from_bytes(lost, "big", signed=True)
        out.append(ReportBlock(ssrc, fraction, lost_i, highest, jitter, lsr, dlsr))
        pos += _BLOCK.size
    return out


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a (compound) RTCP packet. Raises ParseError on malformed input."""
    out: list[RtcpPacket] = []
    pos, size = 0, len(data)
    if size < 4:
        raise ParseError("rtcp-short", f"{size} bytes")
    while pos < size:
        if size - pos < 4:
            raise ParseError("rtcp-short", "truncated header")
        b0, pt, length = _HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise ParseError("rtcp-version", f"version {b0 >> 6}")
        end = pos + 4 + 4 * length
        if end > size:
            raise ParseError("rtcp-length", f"length {length} beyond {size - pos} bytes")
        if b0 & 0x20:  # padding: only allowed in the last packet
            if end != size or length == 0:
                raise ParseError("rtcp-padding", "padding not in the last packet")
            pad = data[end - 1]
            if pad == 0 or pad > 4 * length:
                raise ParseError("rtcp-padding", f"padding {pad}")
            body_end = end - pad
        else:
            body_end = end
        count = b0 & 0x1F
        body = pos + 4
        if pt == SR:
            if body_end - body < 24:
                raise ParseError("rtcp-short", "sender report")
            ssrc, ntp_hi, ntp_lo, rtp_ts, pkts, octets = struct.unpack_from("!IIIIII", data, body)
            blocks = _blocks(data, body + 24, count, body_end)
            out.append(SenderReport(ssrc, (ntp_hi << 32) | ntp_lo, rtp_ts, pkts, octets, blocks))
        elif pt == RR:
            if body_end - body < 4:
                raise ParseError("rtcp-short", "receiver report")
            (ssrc,) = struct.unpack_from("!I", data, body)
            out.append(ReceiverReport(ssrc, _blocks(data, body + 4, count, body_end)))
        elif pt == BYE:
            if body + 4 * count > body_end:
                raise ParseError("rtcp-length", "BYE source count")
            out.append(Bye(list(struct.unpack_from(f"!{count}I", data, body))))
        elif pt in (RTPFB, PSFB):
            if body_end - body < 8:
                raise ParseError("rtcp-short", "feedback message")
            sender, media = struct.unpack_from("!II", data, body)
            fci = body + 8
            if pt == RTPFB and count == 1:  # generic NACK
                lost: list[int] = []
                for p in range(fci, body_end - 3, 4):
                    pid, blp = struct.unpack_from("!HH", data, p)
                    lost.append(pid)
                    lost.extend((pid + i + 1) & 0xFFFF for i in range(16) if blp >> i & 1)
                out.append(Nack(sender, media, lost))
            elif pt == PSFB and count == 1:
                out.append(Pli(sender, media))
            elif pt == PSFB and count == 4:
                entries = [
                    struct.unpack_from("!IB", data, p) for p in range(fci, body_end - 7, 8)
                ]
                out.append(Fir(sender, [(s, n) for s, n in entries]))
        pos = end
    return out


def _header(count: int, pt: int, body_len: int) -> bytes:
    if count > 0x1F:
        raise ValueError(f"at most 31 report blocks/items per packet, got {count}")
    return _HEADER.pack(0x80 | count, pt, body_len // 4)


def _block_bytes(b: ReportBlock) -> bytes:
    lost = max(-(1 << 23), min((1 << 23) - 1, b.packets_lost)).to_bytes(3, "big", signed=True)
    return _BLOCK.pack(b.ssrc, b.fraction_lost, lost, b.highest_sequence, b.jitter, b.lsr, b.dlsr)


def build_sr(ssrc: int, ntp_time: float, rtp_timestamp: int, packet_count: int,
             octet_count: int, reports: Iterable[ReportBlock] = ()) -> bytes:
    """A Sender Report; ``ntp_time`` is unix time in seconds."""
    blocks = b"".join(_block_bytes(b) for b in reports)
    ntp = unix_to_ntp(ntp_time)
    body = struct.pack("!IIIIII", ssrc, ntp >> 32, ntp & 0xFFFFFFFF,
                       rtp_timestamp & 0xFFFFFFFF, packet_count & 0xFFFFFFFF,
                       octet_count & 0xFFFFFFFF) + blocks
    return _header(len(blocks) // _BLOCK.size, SR, len(body)) + body


def build_rr(ssrc: int, reports: Iterable[ReportBlock] = ()) -> bytes:
    blocks = b"".join(_block_bytes(b) for b in reports)
    body = struct.pack("!I", ssrc) + blocks
    return _header(len(blocks) // _BLOCK.size, RR, len(body)) + body


def build_sdes_cname(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one chunk carrying the CNAME item."""
    text = cname.encode("utf-8")[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return _header(1, SDES, len(chunk)) + chunk


def build_bye(ssrcs: Iterable[int]) -> bytes:
    """A BYE for ``ssrcs`` (1..31 sources, no reason text): the sender leaves the session.
    Raises ValueError for none or more than 31."""
    sources = [s & 0xFFFFFFFF for s in ssrcs]
    if not sources:
        raise ValueError("a BYE names at least one SSRC")
    body = struct.pack(f"!{len(sources)}I", *sources)
    return _header(len(sources), BYE, len(body)) + body


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return _header(1, PSFB, 8) + struct.pack("!II", sender_ssrc, media_ssrc)


def build_fir(sender_ssrc: int, media_ssrc: int, seq: int) -> bytes:
    body = struct.pack("!IIIB3x", sender_ssrc, 0, media_ssrc, seq & 0xFF)
    return _header(4, PSFB, len(body)) + body


def build_nack(sender_ssrc: int, media_ssrc: int, lost: Iterable[int]) -> bytes:
    """A generic NACK for the 16-bit sequence numbers ``lost`` (PID+BLP pairs, wrap-safe)."""
    pending = sorted({s & 0xFFFF for s in lost})
    if not pending:
        raise ValueError("nothing to NACK")
    # order by distance from the first, so a wrap (65535, 0) packs together
    base = pending[0]
    if pending[-1] - base > 0x8000:
        base = next(s for s in pending if s >= 0x8000)
        pending = sorted(pending, key=lambda s: (s - base) & 0xFFFF)
    fci = bytearray()
    i = 0
    while i < len(pending):
        pid = pending[i]
        blp = 0
        j = i + 1
        while j < len(pending) and 0 < (pending[j] - pid) & 0xFFFF <= 16:
            blp |= 1 << (((pending[j] - pid) & 0xFFFF) - 1)
            j += 1
        fci += struct.pack("!HH", pid, blp)
        i = j
    body = struct.pack("!II", sender_ssrc, media_ssrc) + bytes(fci)
    return _header(1, RTPFB, len(body)) + body
