"""Metric values, patterns and the in-memory history (Core's ``monitor`` package), sans-IO.

A :class:`Source` describes metrics (:class:`Description`: name, help, label names) and
collects their current :class:`Value` s when asked — synchronously, from live state. The
:class:`Monitor` holds the sources; :meth:`Monitor.collect` returns the values matching
:class:`Pattern` s (a metric name plus label-value regular expressions, searched like Go's
``regexp.MatchString``). :class:`History` is a ring of ``range // interval`` snapshots;
:meth:`History.sample` adds one (the subsystem's sampler task calls it every
``metrics.interval_seconds``) and :meth:`History.query` resamples them to a requested
range and interval exactly as Core's ``historyMonitor.History``.

Nothing here blocks or does I/O by itself; the sources it calls are cheap reads of memory
(and, for system metrics, of ``/proc`` through psutil).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Description", "History", "Monitor", "Pattern", "Source", "Value", "series_json"]

log = logging.getLogger(__name__)

MAX_QUERY_POINTS = 10_000  # steps of one history query (timerange_sec / interval_sec)


@dataclass(frozen=True, slots=True)
class Description:
    name: str
    description: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Value:
    """One sample: metric ``name``, its ``labels`` (name -> value) and the number."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    @classmethod
    def of(cls, desc: Description, value: float, *label_values: str) -> Value:
        return cls(desc.name, tuple(zip(desc.labels, label_values, strict=True)), float(value))

    def label(self, name: str) -> str:
        for key, value in self.labels:
            if key == name:
                return value
        return ""

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.name, self.labels


class Source(Protocol):
    """Something that has metrics (see module docstring)."""

    def describe(self) -> Sequence[Description]: ...

    def collect(self) -> Iterable[Value]: ...


class Pattern:
    """A metric name and label regular expressions; an invalid expression matches nothing."""

    def __init__(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.valid = True
        self.labels: dict[str, re.Pattern[str]] = {}
        for key, expr in (labels or {}).items():
            try:
                self.labels[key] = re.compile(expr)
            except re.error:
                self.valid = False

    def match(self, value: Value) -> bool:
        if not self.valid or value.name != self.name:
            return False
        given = dict(value.labels)
        for key, expr in self.labels.items():
            if key not in given or expr.search(given[key]) is None:
                return False
        return True


class Monitor:
    """The registered sources, by metric name."""

    def __init__(self) -> None:
        self._sources: list[Source] = []
        self._by_name: dict[str, Source] = {}

    def register(self, source: Source) -> None:
        """Add a source (its metric names replace earlier sources' with the same names)."""
        self._sources.append(source)
        for desc in source.describe():
            self._by_name[desc.name] = source

    def describe(self) -> list[Description]:
        seen: dict[str, Description] = {}
        for source in self._sources:
            for desc in source.describe():
                seen.setdefault(desc.name, desc)
        return sorted(seen.values(), key=lambda d: d.name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def collect(self, patterns: Sequence[Pattern]) -> list[Value]:
        """Current values matching any of ``patterns`` (each source asked at most once)."""
        wanted: dict[int, tuple[Source, list[Pattern]]] = {}
        for pattern in patterns:
            source = self._by_name.get(pattern.name)
            if source is not None:
                wanted.setdefault(id(source), (source, []))[1].append(pattern)
        out: list[Value] = []
        for source, pats in wanted.values():
            try:
                values = list(source.collect())
            except Exception:  # a broken source must not break the others
                log.exception("metrics source %r failed", source)
                continue
            out.extend(v for v in values if any(p.match(v) for p in pats))
        return out

    def collect_all(self) -> list[Value]:
        return self.collect([Pattern(name) for name in self.names()])


@dataclass(frozen=True, slots=True)
class Snapshot:
    ts: float  # unix seconds
    values: list[Value] | None  # None: no data at that time


class History:
    """Snapshots of every metric, ``range_seconds // interval_seconds`` of them (a ring)."""

    def __init__(self, monitor: Monitor, range_seconds: int, interval_seconds: int, *,
                 wall: Callable[[], float] = time.time) -> None:
        if interval_seconds <= 0 or range_seconds <= 0:
            raise ValueError("metrics.range_seconds and metrics.interval_seconds must be > 0")
        if interval_seconds > range_seconds:
            raise ValueError("metrics.interval_seconds must not be larger than "
                             "metrics.range_seconds")
        self.monitor = monitor
        self.range = range_seconds
        self.interval = interval_seconds
        self.wall = wall
        self.ring: deque[Snapshot] = deque(maxlen=max(1, range_seconds // interval_seconds))

    def sample(self, ts: float | None = None) -> None:
        """Store the current value of every metric."""
        self.ring.append(Snapshot(self.wall() if ts is None else ts,
                                  self.monitor.collect_all()))

    def query(self, timerange: int, interval: int, patterns: Sequence[Pattern]
              ) -> list[Snapshot]:
        """Core's resampling: ``timerange // interval`` points from ``now - timerange -
        history interval`` on; before the first snapshot no data, after the last the last
        values, else the snapshot at or before each point. ValueError when too many points.
        """
        if timerange <= 0 or interval <= 0:
            return []
        steps = timerange // interval
        if steps > MAX_QUERY_POINTS:
            raise ValueError(f"timerange_sec / interval_sec must be at most {MAX_QUERY_POINTS}"
                             f" points, got {steps}")
        now = self.wall()
        not_before = now - timerange - self.interval
        values = [Snapshot(s.ts, [v for v in s.values or () if any(p.match(v) for p in patterns)])
                  for s in self.ring if s.ts >= not_before]
        if not values:
            return []
        start, end = values[0].ts, values[-1].ts
        out: list[Snapshot] = []
        j = 0
        for i in range(steps):
            t = not_before + i * interval
            if t < start:
                out.append(Snapshot(t, None))
            elif t > end:
                out.append(Snapshot(t, values[-1].values))
            else:
                while j < len(values) - 1 and not values[j].ts <= t < values[j + 1].ts:
                    j += 1
                if j < len(values) - 1:
                    out.append(Snapshot(t, values[j].values))
        return out


def _number(value: float) -> float | int:
    """Core's JSON number: integers without decimals, else 3 decimals; NaN/inf -> 0."""
    if not math.isfinite(value):
        return 0
    if value == int(value):
        return int(value)
    return round(value, 3)


def series_json(snapshots: Sequence[Snapshot]) -> list[dict[str, Any]]:
    """Core's ``MetricsResponse.metrics``: one series per metric+labels, ``[[ts, value]…]``."""
    series: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    for snap in snapshots:
        if snap.values is None:
            continue
        for v in snap.values:
            entry = series.get(v.key)
            if entry is None:
                # Core: a metric without labels has "labels": null
                entry = series[v.key] = {"name": v.name,
                                         "labels": dict(v.labels) if v.labels else None,
                                         "values": []}
            value = v.value
            entry["values"].append([int(snap.ts), _number(value)])
    return list(series.values())
