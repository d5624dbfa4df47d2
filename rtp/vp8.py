"""VP8 RTP payload inspection (RFC 7741), sans-IO.

Only what the forwarder needs: where the VP8 data starts behind the payload descriptor, and
whether a payload starts a keyframe (the first partition of a key frame: S=1, PID=0 and the
inverse key-frame bit P of the VP8 payload header clear).
"""

from __future__ import annotations

from .errors import ParseError

__all__ = ["descriptor_size", "is_keyframe"]


def descriptor_size(payload: bytes) -> int:
    """Size of the VP8 payload descriptor at the start of ``payload``.

    Raises ParseError (``vp8-short``) when the descriptor is cut off.
    """
    size = len(payload)
    if size < 1:
        raise ParseError("vp8-short", "empty payload")
    pos = 1
    if payload[0] & 0x80:  # X: extension byte follows
        if size < 2:
            raise ParseError("vp8-short", "no extension byte")
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: PictureID, 7 or 15 bits (M)
            if size <= pos:
                raise ParseError("vp8-short", "no picture id")
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if pos > size:
        raise ParseError("vp8-short", "descriptor longer than the payload")
    return pos


def is_keyframe(payload: bytes) -> bool:
    """True when ``payload`` starts a VP8 key frame; False otherwise (never raises)."""
    if not payload or payload[0] & 0x17 != 0x10:  # S=1 and partition index 0
        return False
    try:
        pos = descriptor_size(payload)
    except ParseError:
        return False
    return pos < len(payload) and not payload[pos] & 0x01
