"""What a relay counts, for the observability layer.

:class:`RelayCounters` is mutable and shared by every :class:`~relay.queue.ReaderQueue` of one
server (they add to it as they skip and drop), so the totals survive the readers.
:class:`RelayStats` is an immutable snapshot one server reports (``relay_*`` Prometheus names,
label ``server``); fields a relay does not have are ``None`` and are not exported.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RelayCounters", "RelayStats"]


@dataclass(slots=True)
class RelayCounters:
    """Monotonic totals of one server: ``skips`` (a reader's queue overflowed and it skipped
    to the next keyframe) and ``drops`` (a reader was dropped as too slow)."""

    skips: int = 0
    drops: int = 0


@dataclass(frozen=True, slots=True)
class RelayStats:
    """One server's relay state at one moment.

    ``readers``: open readers (players, subscribers, viewers); ``queued_bytes``: bytes waiting
    in their queues (None: the relay has no reader queues); ``skips``/``drops``: totals since
    start (None: the relay has no such policy); ``gop_bytes``: bytes in its GOP caches (None:
    it keeps none).
    """

    readers: int
    queued_bytes: int | None = None
    skips: int | None = None
    drops: int | None = None
    gop_bytes: int | None = None
