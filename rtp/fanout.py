"""The per-viewer hot path: one producer packet to every viewer track (``fan_out``).

For each :class:`~rtp.peer.OutTrack` in steady state: rewrite the 12-byte RTP header (the
viewer's payload type, its own SSRC, sequence/timestamp offsets; the marker bit and
everything after the header kept), SRTP-protect it with the viewer's session, send it on the
mux socket. A full socket buffer, an unusable address or an SRTP refusal drops the packet
for that viewer only (``OutTrack.dropped``); ``packets``/``bytes`` count what was sent.

Two implementations with the same contract, counter for counter:

* ``rtp._fanout`` (C, built from ``rtp/_fanout.c`` when a compiler is there): header written
  into a scratch buffer, libsrtp's ``srtp_protect`` called directly on it, and the datagrams
  of up to 64 viewers handed to the kernel in **one ``sendmmsg``** — about half the cost per
  viewer-packet of the Python loop (``bench/`` has the figures).
* :func:`fan_out_python`: one header pack, one concatenation, one protect and one
  non-blocking ``sendto`` per viewer.

:data:`NATIVE` tells which one :func:`fan_out` is; ``RTP_FANOUT=python`` in the environment
forces the Python loop. Both are synchronous (no checkpoint): the Source's reader yields
between packets.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import pylibsrtp

from .srtp import PROTECT_ADDRESS

if TYPE_CHECKING:
    from .media import SourcePacket
    from .peer import OutTrack

__all__ = ["NATIVE", "fan_out", "fan_out_python"]

_HEADER = struct.Struct("!BBHII")


def fan_out_python(fan: list[OutTrack], pkt: SourcePacket) -> None:
    """Send ``pkt`` to every viewer track in ``fan`` (the pure-Python loop)."""
    data = pkt.data
    b0 = data[0]
    marker = data[1] & 0x80
    rest = data[12:]
    seq = pkt.seq
    ts = pkt.ts
    pack = _HEADER.pack
    for t in fan:
        try:
            out = t.protect(pack(b0, marker | t.payload_type, (seq + t.seq_delta) & 0xFFFF,
                                 (ts + t.ts_delta) & 0xFFFFFFFF, t.ssrc) + rest)
            t.sendto(out, t.addr)
        except (BlockingIOError, pylibsrtp.Error, ValueError, OSError):
            t.dropped += 1
            continue
        t.packets += 1
        t.bytes += len(out)


def _native() -> Callable[[list[OutTrack], SourcePacket], None] | None:
    if os.environ.get("RTP_FANOUT", "").lower() == "python" or not PROTECT_ADDRESS:
        return None
    try:
        from . import _fanout  # type: ignore[attr-defined]
    except ImportError:
        return None
    native_fan_out = _fanout.fan_out
    protect = PROTECT_ADDRESS

    def fan_out_native(fan: list[OutTrack], pkt: SourcePacket) -> None:
        """Send ``pkt`` to every viewer track in ``fan`` (C: protect + sendmmsg)."""
        native_fan_out(protect, fan, pkt.data, pkt.seq, pkt.ts)

    return fan_out_native


_NATIVE_FAN_OUT = _native()
#: True when :func:`fan_out` is the C implementation.
NATIVE = _NATIVE_FAN_OUT is not None
fan_out: Callable[[list[OutTrack], SourcePacket], None] = _NATIVE_FAN_OUT or fan_out_python
