"""GOP cache: the units since the last GOP start, so that a new reader begins at a keyframe.

Contract (:class:`GopCache`):

* :meth:`GopCache.push` ``(unit, starts_gop)``: a unit that starts a GOP empties the cache and
  is kept as its first unit; any other unit is appended only while the cache holds a GOP
  (before the first GOP start, or after an overflow, it is not kept).
* Bounds: ``max_bytes`` (the sum of :attr:`Unit.size`) and, when not 0, ``max_units``. A unit
  that would take the cache past either bound empties it instead of being kept; the cache then
  stays empty until the next GOP start ("overflow waits for the next keyframe"), so a reader
  never starts on a GOP whose beginning was lost. A GOP start larger than ``max_bytes`` alone
  is not kept either.
* :attr:`GopCache.units` is the kept GOP in order, first unit first. It is a list the cache
  *replaces* (never mutates in place) when a GOP starts or overflows, so a reference taken
  earlier stays a consistent snapshot; callers must not mutate it.

What "starts a GOP" means is the caller's: an RTMP video keyframe message, the first packet of
an RTP keyframe access unit (the other packets of that access unit are keyframe units that
continue it). Sans-IO: no clock, no I/O; not thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["GOP_MAX_BYTES", "GOP_MAX_PACKETS", "GopCache", "Unit"]

#: The default bounds of a WebRTC Source's GOP cache (the ``relay.gop_max_packets`` /
#: ``relay.gop_max_bytes`` defaults): dropped (until the next keyframe) beyond this many
#: packets ...
GOP_MAX_PACKETS = 4000
#: ... or this many bytes.
GOP_MAX_BYTES = 32 * 1024 * 1024


class Unit(Protocol):
    """What the relay needs of a relayed unit (an RTMP message, an RTP packet, ...)."""

    @property
    def size(self) -> int:
        """Bytes counted against the bounds."""
        ...

    @property
    def keyframe(self) -> bool:
        """True when a reader may start at this unit (it is, or belongs to, a keyframe)."""
        ...


U = TypeVar("U", bound=Unit)


class GopCache(Generic[U]):
    """The current GOP (see the module docstring)."""

    __slots__ = ("max_bytes", "max_units", "units", "bytes", "gops", "overflows")

    def __init__(self, max_bytes: int, max_units: int = 0) -> None:
        if max_bytes < 0 or max_units < 0:
            raise ValueError("GOP cache bounds must be >= 0")
        self.max_bytes = max_bytes
        #: 0 = no bound on the number of units
        self.max_units = max_units
        self.units: list[U] = []
        #: sum of the kept units' sizes
        self.bytes = 0
        #: GOP starts seen
        self.gops = 0
        #: times the cache was emptied because a GOP outgrew a bound
        self.overflows = 0

    def push(self, unit: U, starts_gop: bool) -> bool:
        """Offer the next unit of the stream; True when it was kept."""
        if starts_gop:
            self.units = []
            self.bytes = 0
            self.gops += 1
        elif not self.units:
            return False  # no GOP start yet (or the last GOP overflowed): wait for one
        size = unit.size
        if self.bytes + size > self.max_bytes or (
                self.max_units and len(self.units) >= self.max_units):
            self.units = []
            self.bytes = 0
            self.overflows += 1
            return False
        self.units.append(unit)
        self.bytes += size
        return True

    def clear(self) -> None:
        """Forget the GOP (e.g. the producer restarted); wait for the next GOP start."""
        self.units = []
        self.bytes = 0

    @property
    def first(self) -> U | None:
        """The GOP's first unit (the one that started it), None when empty."""
        return self.units[0] if self.units else None

    def __len__(self) -> int:
        return len(self.units)

    def __bool__(self) -> bool:
        return bool(self.units)

    def __iter__(self) -> Iterator[U]:
        return iter(self.units)
