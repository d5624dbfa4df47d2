"""CPU / memory sampling of a process from /proc, and the sans-IO limit watch.

* :func:`parse_stat` / :func:`parse_status_rss` are pure parsers of ``/proc/<pid>/stat`` and
  ``/proc/<pid>/status`` text; :func:`sample` reads both (a tiny synchronous read from procfs,
  which never blocks on disk) and returns a :class:`Sample` or None if the process is gone.
* :class:`CpuMeter` turns successive samples into a CPU percentage **normalised to all cores**
  (100 % = the whole machine busy), like datarhei's psutil wrapper.
* :class:`LimitWatch` says when CPU or memory has been above its limit *continuously* for at
  least ``waitfor`` seconds (the timer starts at the first sample above the limit; a sample at
  or below the limit resets it; a limit of 0 is disabled).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["CpuMeter", "LimitWatch", "Sample", "parse_stat", "parse_status_rss", "sample"]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ProcParseError(ValueError):
    """/proc text that does not have the expected layout."""


def parse_stat(text: str) -> int:
    """Total CPU ticks (utime + stime) from the text of ``/proc/<pid>/stat``."""
    try:
        fields = text.rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state); utime/stime are fields 14/15 -> indexes 11/12
        return int(fields[11]) + int(fields[12])
    except (IndexError, ValueError) as exc:
        raise ProcParseError(f"unexpected /proc/<pid>/stat content: {text[:80]!r}") from exc


def parse_status_rss(text: str) -> int:
    """Resident set size in bytes from the text of ``/proc/<pid>/status`` (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            try:
                value = int(parts[1])
            except (IndexError, ValueError) as exc:
                raise ProcParseError(f"unexpected VmRSS line: {line!r}") from exc
            unit = parts[2].lower() if len(parts) > 2 else "kb"
            return value * {"kb": 1024, "mb": 1024 * 1024, "b": 1}.get(unit, 1024)
    return 0


@dataclass(frozen=True)
class Sample:
    """One reading: CPU seconds used so far and current RSS."""

    cpu_seconds: float
    rss_bytes: int


def sample(pid: int) -> Sample | None:
    """Read /proc for ``pid``; None when the process is gone (or a zombie without status)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        return Sample(parse_stat(stat) / CLK_TCK, parse_status_rss(status))
    except (OSError, ProcParseError):
        return None


class CpuMeter:
    """CPU % (of all cores) from successive ``(now, cpu_seconds)`` readings."""

    def __init__(self, ncpu: int | None = None) -> None:
        self.ncpu = max(1, ncpu or os.cpu_count() or 1)
        self._last: tuple[float, float] | None = None

    def update(self, now: float, cpu_seconds: float) -> float | None:
        """The usage since the previous reading (None for the first reading)."""
        last, self._last = self._last, (now, cpu_seconds)
        if last is None or now <= last[0]:
            return None
        return max(0.0, (cpu_seconds - last[1]) / ((now - last[0]) * self.ncpu) * 100.0)


class LimitWatch:
    """Decides when a limit has been exceeded continuously for ``waitfor`` seconds."""

    def __init__(self, cpu_percent: float, memory_bytes: int, waitfor: float) -> None:
        self.cpu_percent = cpu_percent
        self.memory_bytes = memory_bytes
        self.waitfor = waitfor
        self._cpu_since: float | None = None
        self._mem_since: float | None = None

    @property
    def enabled(self) -> bool:
        return self.cpu_percent > 0 or self.memory_bytes > 0

    def update(self, now: float, cpu_percent: float | None, memory_bytes: int | None) -> str | None:
        """Feed a sample; returns a reason ("cpu ..."/"memory ...") when a limit is exceeded."""
        reason: str | None = None
        if self.cpu_percent > 0 and cpu_percent is not None:
            if cpu_percent > self.cpu_percent:
                if self._cpu_since is None:
                    self._cpu_since = now
                if now - self._cpu_since >= self.waitfor:
                    reason = f"cpu {cpu_percent:.1f}% > {self.cpu_percent:g}%"
            else:
                self._cpu_since = None
        if self.memory_bytes > 0 and memory_bytes is not None:
            if memory_bytes > self.memory_bytes:
                if self._mem_since is None:
                    self._mem_since = now
                if now - self._mem_since >= self.waitfor and reason is None:
                    reason = f"memory {memory_bytes} bytes > {self.memory_bytes} bytes"
            else:
                self._mem_since = None
        return reason
