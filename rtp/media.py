"""What a Source and its viewers share, as protocols: the packet a Source hands out and the
view of a Source (and of its tracks) a Peer reads.

:class:`rtp.source.Source`, its ``TrackState`` and ``MediaPacket`` are the implementations;
:mod:`rtp.peer`, :mod:`rtp.fanout` and :mod:`rtp.resend` are typed against these protocols
so that none of them imports :mod:`rtp.source` (which imports them). Types only, no code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["SourcePacket", "SourceView", "TrackView"]


class SourcePacket(Protocol):
    """One producer packet with its normalised (restart-proof) sequence number and timestamp."""

    kind: str
    seq: int
    ts: int
    data: bytes
    keyframe: bool
    arrival: float


class TrackView(Protocol):
    """What a viewer reads of one track of its Source."""

    clock_rate: int
    last_seq: int  # normalised, -1 before the first packet
    last_ts: int
    gop: Sequence[SourcePacket]  # the current GOP (from its keyframe), for a new viewer

    def lookup(self, seq: int, now: float) -> SourcePacket | None:
        """The packet ``seq`` from the retransmission history, if still there."""

    def rtp_time(self, now: float) -> int:
        """The normalised RTP timestamp of ``now`` (for Sender Reports)."""


class SourceView(Protocol):
    """What a viewer (:class:`rtp.peer.Peer`) uses of the Source it watches."""

    id: str
    state: Mapping[str, TrackView]
    listeners: list[Any]  # viewers taking packets through ``forward`` (off the fast path)
    fanout: Mapping[str, list[Any]]  # per track: the ``rtp.peer.OutTrack`` of Python fast-path viewers
    engine: Any  # the native fan-out engine (``rtp._fanout.Engine``) or None
    tables: Mapping[str, Any]  # per track: its native fan-out table (with an engine)

    def detach(self, peer: Any) -> None:
        """Forget ``peer`` (called by the viewer when it ends)."""
