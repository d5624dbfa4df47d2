"""Per-client-address backoff for ``POST /api/login`` that also holds for parallel attempts.

Every failed attempt from an address doubles the wait before that address's *next* attempt is
evaluated: ``delay * 2**(failures-1)``, capped at ``max_delay`` (a success resets it; a quiet
address is forgotten after ``forget_after`` seconds). Attempts from one address are evaluated
one at a time (a per-address trio lock), so 40 parallel wrong guesses are answered one by one
with growing pauses, not all at once. At most ``max_waiting`` attempts per address may wait;
more are refused at once (:class:`Throttled`, answered with 429 and ``Retry-After``). At most
``max_addresses`` addresses are tracked; when full, the address with the oldest activity that
has nobody waiting is dropped.

:meth:`LoginThrottle.attempt` is an async context manager; the waits in it are cancellable
trio sleeps/lock acquisitions and leave no state behind when cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio


class Throttled(Exception):
    """Too many attempts from one address are already waiting; ``retry_after`` in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many login attempts, retry after {retry_after:.0f}s")
        self.retry_after = retry_after


@dataclass
class _Address:
    lock: trio.Lock = field(default_factory=trio.Lock)
    failures: int = 0
    not_before: float = 0.0  # trio clock: the next attempt is evaluated no earlier than this
    last_seen: float = 0.0
    waiting: int = 0


class Attempt:
    """Handed out by :meth:`LoginThrottle.attempt`: call :meth:`failed` or :meth:`succeeded`."""

    def __init__(self, throttle: LoginThrottle, entry: _Address) -> None:
        self._throttle = throttle
        self._entry = entry

    def failed(self) -> None:
        """Count a failure: the address's next attempt waits longer."""
        entry = self._entry
        entry.failures += 1
        wait = min(self._throttle.delay * 2 ** min(entry.failures - 1, 30), self._throttle.max_delay)
        entry.not_before = self._throttle.clock() + wait

    def succeeded(self) -> None:
        """Reset the address's backoff."""
        self._entry.failures = 0
        self._entry.not_before = 0.0


class LoginThrottle:
    """Backoff state for all client addresses (see module docstring)."""

    def __init__(
        self, *, delay: float = 1.0, max_delay: float = 30.0, max_waiting: int = 16,
        max_addresses: int = 10_000, forget_after: float = 3600.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.delay = delay
        self.max_delay = max(max_delay, delay)
        self.max_waiting = max_waiting
        self.max_addresses = max_addresses
        self.forget_after = forget_after
        self.clock = clock
        self._entries: dict[str, _Address] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, address: str) -> _Address:
        now = self.clock()
        entry = self._entries.get(address)
        if entry is not None and entry.waiting == 0 and now - entry.last_seen > self.forget_after:
            entry = None
        if entry is None:
            if len(self._entries) >= self.max_addresses:
                self._evict(now)
            entry = self._entries[address] = _Address()
        entry.last_seen = now
        return entry

    def _evict(self, now: float) -> None:
        idle = [(e.last_seen, a) for a, e in self._entries.items() if e.waiting == 0]
        if idle:
            del self._entries[min(idle)[1]]

    @asynccontextmanager
    async def attempt(self, address: str) -> AsyncIterator[Attempt]:
        """Wait for ``address``'s turn and backoff; raise Throttled when too many wait."""
        entry = self._entry(address)
        if entry.waiting >= self.max_waiting:
            raise Throttled(max(entry.not_before - self.clock(), self.delay))
        entry.waiting += 1
        try:
            async with entry.lock:
                await trio.sleep_until(entry.not_before)
                yield Attempt(self, entry)
        finally:
            entry.waiting -= 1
            entry.last_seen = self.clock()
