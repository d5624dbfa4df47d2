"""A token bucket for log lines: pure, no I/O, no locks.

``RateLimit(rate).take(now)`` lets ``rate`` events per second through (burst = ``rate``) and
counts the rest; the first event let through after a suppressed stretch learns how many
were suppressed, so the log can say so. Used from several threads (libsrt's and the I/O
thread): the GIL serialises its few operations; a lost update only shifts one count.
"""

from __future__ import annotations

__all__ = ["RateLimit"]


class RateLimit:
    """At most ``rate`` per second (token bucket, burst = rate). Approximate across threads
    (the GIL serialises the few operations; a lost update only shifts one count)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.stamp = 0.0
        self.suppressed = 0

    def take(self, now: float) -> int | None:
        """None: over the limit (counted). Else the number suppressed since the last pass."""
        self.tokens = min(float(self.rate), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            self.suppressed += 1
            return None
        self.tokens -= 1.0
        suppressed, self.suppressed = self.suppressed, 0
        return suppressed
