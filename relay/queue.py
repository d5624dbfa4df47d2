"""Reader queue: one reader's byte-bounded queue; skip to the next keyframe, drop after N skips.

Contract (:class:`ReaderQueue`), for a producer that must never wait for a reader:

* :meth:`ReaderQueue.offer` ``(keyframe, size, *items)`` queues one unit (given as one or more
  items, e.g. an RTMP header and two shared body pieces) of ``size`` bytes, or says why not
  (:class:`Offer`). It never blocks and never grows the queue past ``max_bytes``.
* Start: with ``start_at_keyframe`` (the default) the first unit queued is a keyframe; units
  before it are refused with ``WAITING``.
* Overflow: a unit that would take the queue past ``max_bytes`` empties the queue and counts a
  skip (``SKIPPED``); the reader waits for the next keyframe — or resumes at once when the
  overflowing unit is a keyframe (``RESUMED``: queue emptied, that unit queued).
* Drop: the overflow that would be skip number ``max_skips + 1`` drops the reader instead
  (``DROPPED``; ``max_skips=0`` drops at the first overflow): :attr:`dropped` is set, nothing
  is queued any more, and what is queued stays for the owner (who ends the reader) to discard
  with :meth:`clear`. :meth:`drop` drops a reader for a reason of the caller's (e.g. libsrt's
  send buffer is too far behind).
* :meth:`push` queues data that must not be skipped (protocol replies, status messages); a
  reader that lets more than ``2 * max_bytes`` pile up that way is dropped.
* After :meth:`close` (the publisher is gone) offers are refused with ``CLOSED`` (pushes are
  still taken, e.g. an end-of-stream notice); the consumer drains what is queued.
* Consumer side: :meth:`drain` takes everything (O(1)), :meth:`peek`/:meth:`pop` one item.
* Counters: :attr:`skips`, :attr:`units` (units queued), :attr:`queued_bytes`, and a shared
  :class:`~relay.counters.RelayCounters` when given (skips and drops of the whole server).

Sans-IO: waking the consumer is the caller's business (look at the :class:`Offer`).
Not thread-safe.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Generic, TypeVar

from .counters import RelayCounters

__all__ = ["Offer", "ReaderQueue"]

T = TypeVar("T")

#: data pushed with :meth:`ReaderQueue.push` may reach this many times ``max_bytes``
CONTROL_FACTOR = 2


class Offer(enum.Enum):
    """What :meth:`ReaderQueue.offer` did with a unit."""

    QUEUED = "queued"  #: queued
    WAITING = "waiting"  #: not queued: the reader waits for a keyframe
    SKIPPED = "skipped"  #: overflow: queue emptied, not queued, the reader waits for a keyframe
    RESUMED = "resumed"  #: overflow on a keyframe: queue emptied, this keyframe queued
    DROPPED = "dropped"  #: overflow past max_skips: the reader is dropped now
    CLOSED = "closed"  #: not queued: the reader is closed or was dropped before


class ReaderQueue(Generic[T]):
    """One reader's queue (see the module docstring)."""

    def __init__(self, max_bytes: int, max_skips: int, *, start_at_keyframe: bool = True,
                 counters: RelayCounters | None = None) -> None:
        if max_bytes < 0 or max_skips < 0:
            raise ValueError("max_bytes and max_skips must be >= 0")
        self.max_bytes = max_bytes
        self.max_skips = max_skips
        self.counters = counters
        self.queue: deque[T] = deque()
        self.queued_bytes = 0
        self.waiting_keyframe = start_at_keyframe
        self.skips = 0
        self.units = 0
        self.dropped = False
        self.closed = False

    # --- producer side --------------------------------------------------------------------

    def wants(self, keyframe: bool) -> bool:
        """Would :meth:`offer` consider a unit with this ``keyframe`` flag? (Lets a caller skip
        preparing items that would be refused anyway.)"""
        return not (self.dropped or self.closed or (self.waiting_keyframe and not keyframe))

    def offer(self, keyframe: bool, size: int, *items: T) -> Offer:
        """Queue one unit of ``size`` bytes made of ``items`` (see the module docstring)."""
        if self.dropped or self.closed:
            return Offer.CLOSED
        if self.waiting_keyframe:
            if not keyframe:
                return Offer.WAITING
            self.waiting_keyframe = False
        outcome = Offer.QUEUED
        if self.queued_bytes + size > self.max_bytes:
            if self.skips >= self.max_skips:
                self.skips += 1
                self.drop()
                return Offer.DROPPED
            self.queue.clear()
            self.queued_bytes = 0
            self.skips += 1
            if self.counters is not None:
                self.counters.skips += 1
            if not keyframe:
                self.waiting_keyframe = True
                return Offer.SKIPPED
            outcome = Offer.RESUMED
        self.queue.extend(items)
        self.queued_bytes += size
        self.units += 1
        return outcome

    def push(self, size: int, *items: T) -> Offer:
        """Queue data that is never skipped; ``DROPPED`` when the reader lets more than
        ``2 * max_bytes`` pile up (the queue is then emptied), ``CLOSED`` once dropped."""
        if self.dropped:
            return Offer.CLOSED
        self.queue.extend(items)
        self.queued_bytes += size
        if self.queued_bytes > CONTROL_FACTOR * self.max_bytes:
            self.drop()
            self.clear()
            return Offer.DROPPED
        return Offer.QUEUED

    def drop(self) -> None:
        """Drop the reader (counted once); later offers and pushes are refused."""
        if not self.dropped:
            self.dropped = True
            if self.counters is not None:
                self.counters.drops += 1

    def close(self) -> None:
        """No more units (the publisher is gone); what is queued can still be drained."""
        self.closed = True

    # --- consumer side --------------------------------------------------------------------

    def drain(self) -> deque[T]:
        """Everything queued, oldest first; the queue is then empty."""
        items = self.queue
        self.queue = deque()
        self.queued_bytes = 0
        return items

    def peek(self) -> T | None:
        """The oldest queued item (None when empty)."""
        return self.queue[0] if self.queue else None

    def pop(self, size: int) -> T:
        """Remove the oldest queued item, which counted ``size`` bytes."""
        item = self.queue.popleft()
        self.queued_bytes -= size
        return item

    def clear(self) -> None:
        """Forget everything queued."""
        self.queue.clear()
        self.queued_bytes = 0
