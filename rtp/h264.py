"""H264 RTP payload inspection (RFC 6184), sans-IO.

The forwarder never decodes video; it only needs to know, per RTP payload, which NAL unit
types it starts (single NAL unit, STAP-A aggregate, FU-A fragment start) to find keyframes
for the GOP cache and to inject SPS/PPS before an IDR that lacks them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from .errors import ParseError

__all__ = [
    "build_stap_a", "has_parameter_sets", "is_keyframe", "nal_types", "parse_sprop",
    "profile_level_id_from_sps",
]

STAP_A = 24
FU_A = 28
IDR = 5
SPS = 7
PPS = 8


def nal_types(payload: bytes) -> list[int]:
    """NAL unit types carried by one RTP payload.

    A single NAL unit gives ``[type]``; a STAP-A gives the types of its aggregated units; an
    FU-A gives the inner type only for the fragment that starts the unit (S bit), else
    ``[]``. Malformed aggregates yield the types readable before the damage (never raises).
    """
    if not payload:
        return []
    nal = payload[0] & 0x1F
    if 1 <= nal <= 23:
        return [nal]
    if nal == STAP_A:
        types: list[int] = []
        pos, end = 1, len(payload)
        while pos + 2 < end:
            size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if size == 0 or pos + size > end:
                break
            types.append(payload[pos] & 0x1F)
            pos += size
        return types
    if nal == FU_A:
        if len(payload) >= 2 and payload[1] & 0x80:
            return [payload[1] & 0x1F]
        return []
    return []


def is_keyframe(payload: bytes) -> bool:
    """True when the payload starts a keyframe: it carries an SPS or the start of an IDR."""
    types = nal_types(payload)
    return IDR in types or SPS in types


def has_parameter_sets(payload: bytes) -> bool:
    """True when the payload carries both an SPS and a PPS."""
    types = nal_types(payload)
    return SPS in types and PPS in types


def build_stap_a(nalus: Sequence[bytes]) -> bytes:
    """A STAP-A payload aggregating ``nalus`` (each a complete NAL unit with its header)."""
    if not nalus:
        raise ValueError("a STAP-A needs at least one NAL unit")
    nri = max((n[0] & 0x60) for n in nalus if n)
    out = bytearray([nri | STAP_A])
    for nalu in nalus:
        if not nalu or len(nalu) > 0xFFFF:
            raise ValueError("NAL unit size must be 1..65535 bytes")
        out += len(nalu).to_bytes(2, "big") + nalu
    return bytes(out)


def parse_sprop(value: str) -> list[bytes]:
    """The NAL units of an SDP ``sprop-parameter-sets`` value (comma-separated base64)."""
    units: list[bytes] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            unit = base64.b64decode(part + "=" * (-len(part) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ParseError("sprop-base64", f"{part[:20]!r}: {exc}") from None
        if not unit:
            raise ParseError("sprop-empty", "empty parameter set")
        units.append(unit)
    if not units:
        raise ParseError("sprop-empty", "no parameter sets")
    return units


def profile_level_id_from_sps(sps: bytes) -> str:
    """The SDP ``profile-level-id`` (6 lower-case hex digits) an SPS NAL unit declares.

    For sources whose SDP lacks it (libx264 without ``-flags +global_header``): profile_idc,
    the constraint flags and level_idc are the three bytes after the NAL header. Raises
    ParseError (``sps-short``, ``sps-type``) when ``sps`` is not an SPS.
    """
    if len(sps) < 4:
        raise ParseError("sps-short", f"{len(sps)} bytes")
    if sps[0] & 0x1F != SPS:
        raise ParseError("sps-type", f"NAL type {sps[0] & 0x1F}")
    return sps[1:4].hex()


def parameter_sets(payload: bytes) -> list[bytes]:
    """The SPS/PPS NAL units carried by one RTP payload (single NAL unit or STAP-A)."""
    if not payload:
        return []
    nal = payload[0] & 0x1F
    if nal in (SPS, PPS):
        return [bytes(payload)]
    if nal != STAP_A:
        return []
    units: list[bytes] = []
    pos, end = 1, len(payload)
    while pos + 2 < end:
        size = (payload[pos] << 8) | payload[pos + 1]
        pos += 2
        if size == 0 or pos + size > end:
            break
        if payload[pos] & 0x1F in (SPS, PPS):
            units.append(bytes(payload[pos:pos + size]))
        pos += size
    return units
