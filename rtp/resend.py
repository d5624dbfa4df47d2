"""Per-viewer sequence numbering of resent packets (sans-IO).

libsrtp's *sender* keeps a replay window (128 packets): ``srtp_protect`` refuses an index 128
or more behind the highest it has protected, and the viewer's receiver refuses repeats. A
keyframe resent to answer a PLI is therefore sent as *new* packets: they take the next
sequence numbers of the viewer's stream and every later live packet moves up by as many
(:meth:`SeqMap.insert`). :class:`SeqMap` remembers which source packet each viewer sequence
number carried, across those insertions, so that a NACK for any of them can be repaired
(from the Source's history, or the inserted copy itself).

Sequence numbers here are 16-bit; "normalised" ones are the Source's restart-proof numbers
(:class:`rtp.source.MediaPacket.seq`), "viewer" ones what this viewer received.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .media import SourcePacket

__all__ = ["SeqMap"]

#: Inserted packets remembered for NACK repair: at most this many, for at most
#: ``INSERTED_SECONDS`` (they keep source packets alive beyond the Source's history).
MAX_INSERTED = 2048
INSERTED_SECONDS = 3.0
#: Insertions remembered (older live packets are beyond any repair anyway).
MAX_EPOCHS = 64


class SeqMap:
    """Viewer sequence number ↔ source packet for one outbound track.

    ``delta`` and ``ts_delta`` are the current offsets: a live packet with normalised
    sequence ``s`` and timestamp ``t`` goes out as ``(s + delta) & 0xFFFF`` and
    ``(t + ts_delta) & 0xFFFFFFFF`` (the fan-out reads them from ``OutTrack``).
    """

    def __init__(self, delta: int, ts_delta: int) -> None:
        self.delta = delta & 0xFFFF
        self.ts_delta = ts_delta & 0xFFFFFFFF
        #: (first normalised seq of the epoch or None for "from the start", deltas)
        self._epochs: collections.deque[tuple[int | None, int, int]] = collections.deque(
            [(None, self.delta, self.ts_delta)], maxlen=MAX_EPOCHS)
        self._inserted: dict[int, tuple[SourcePacket, int]] = {}
        self._order: collections.deque[tuple[float, int]] = collections.deque()

    def insert(self, before_seq: int, packets: list[tuple[SourcePacket, int]],
               ts_shift: int = 0, now: float = 0.0) -> list[int]:
        """Insert ``packets`` (each with the viewer timestamp it is sent with) in front of
        the live packet with normalised sequence ``before_seq`` at time ``now``; returns the
        viewer sequence numbers to send them with. ``delta`` grows by ``len(packets)``,
        ``ts_delta`` by ``ts_shift``. Insertions older than ``INSERTED_SECONDS`` and all
        but the newest ``MAX_INSERTED`` are forgotten."""
        first = (before_seq + self.delta) & 0xFFFF
        seqs = [(first + i) & 0xFFFF for i in range(len(packets))]
        order = self._order
        while order and (len(order) + len(seqs) > MAX_INSERTED
                         or now - order[0][0] > INSERTED_SECONDS):
            _, old = order.popleft()
            self._inserted.pop(old, None)
        for seq, item in zip(seqs[-MAX_INSERTED:], packets[-MAX_INSERTED:], strict=True):
            self._inserted[seq] = item
            order.append((now, seq))
        self.delta = (self.delta + len(packets)) & 0xFFFF
        self.ts_delta = (self.ts_delta + ts_shift) & 0xFFFFFFFF
        self._epochs.append((before_seq & 0xFFFF, self.delta, self.ts_delta))
        return seqs

    def lookup(self, viewer_seq: int, history: Callable[[int], SourcePacket | None]
               ) -> tuple[SourcePacket, int] | None:
        """What the viewer got as ``viewer_seq``: (packet, the viewer timestamp it had), or
        None when it is no longer known. ``history`` looks a normalised sequence number up
        in the Source's retransmission history."""
        next_start: int | None = None
        for start, delta, ts_delta in reversed(self._epochs):
            norm = (viewer_seq - delta) & 0xFFFF
            in_epoch = start is None or (norm - start) & 0xFFFF < 0x8000
            if next_start is not None and in_epoch:
                in_epoch = 0 < (next_start - norm) & 0xFFFF < 0x8000
            if in_epoch:
                pkt = history(norm)
                if pkt is not None:
                    return pkt, (pkt.ts + ts_delta) & 0xFFFFFFFF
                break
            next_start = start
            if start is None:
                break
        return self._inserted.get(viewer_seq)
