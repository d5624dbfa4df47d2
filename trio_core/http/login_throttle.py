"""Per-client-address backoff for ``POST /api/login`` that also holds for parallel attempts.

Attempts from one address are evaluated one at a time (a per-address trio lock), and a failed
attempt holds that lock while it waits before its answer goes out (like Core, which sleeps on
every failure): ``delay * 2**(failures-1)`` seconds, capped at ``max_delay``. So 40 parallel
wrong guesses are answered one by one with growing pauses (1 s, 2 s, 4 s, ...), and even the
right password waits its turn. A success resets the count; a quiet address is forgotten after
``forget_after`` seconds. At most ``max_waiting`` attempts per address may queue; more are
refused at once (:class:`Throttled`, answered with 429 and ``Retry-After``). At most
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
    last_seen: float = 0.0
    waiting: int = 0


class Attempt:
    """Handed out by :meth:`LoginThrottle.attempt`: call :meth:`failed` or :meth:`succeeded`."""

    def __init__(self, throttle: LoginThrottle, entry: _Address) -> None:
        self._throttle = throttle
        self._entry = entry
        self.wait = 0.0  # seconds to hold the address's turn before answering

    def failed(self) -> None:
        """Count a failure: this answer (and the address's queue) waits, longer each time."""
        entry = self._entry
        entry.failures += 1
        self.wait = min(self._throttle.delay * 2 ** min(entry.failures - 1, 30),
                        self._throttle.max_delay)

    def succeeded(self) -> None:
        """Reset the address's backoff."""
        self._entry.failures = 0
        self.wait = 0.0


class LoginThrottle:
    """Backoff state for all client addresses (see module docstring)."""

    def __init__(
        self, *, delay: float = 1.0, max_delay: float = 30.0, max_waiting: int = 100,
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
        """Wait for ``address``'s turn; a failed attempt waits before leaving (the answer is
        sent after). Raises Throttled when too many attempts of ``address`` queue."""
        entry = self._entry(address)
        if entry.waiting >= self.max_waiting:
            raise Throttled(self.max_delay)
        entry.waiting += 1
        try:
            async with entry.lock:
                attempt = Attempt(self, entry)
                try:
                    yield attempt
                finally:
                    if attempt.wait > 0:
                        await trio.sleep(attempt.wait)
        finally:
            entry.waiting -= 1
            entry.last_seen = self.clock()
