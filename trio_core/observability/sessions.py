"""Session accounting as Core's ``session`` package: a registry of named collectors.

A **collector** (``hls``, ``hlsingress``, ``webrtc``, ``rtmp``, ``srt``, …) counts the sessions
of one kind of server: who is connected (active sessions), bytes and bitrate in/out, and the
history of finished sessions (totals per remote/local/reference), which can be persisted.
It enforces ``sessions.max_sessions`` / ``sessions.max_bitrate_mbit`` through
:meth:`Collector.admit`, which raises :class:`SessionLimit` (the HTTP layer answers 509 with
its message, as Core does) and skips clients in ``sessions.ip_ignorelist`` (like Core, they
are neither counted nor limited).

The collector API a server uses (all synchronous, never blocking, no I/O)::

    collector = registry.collector("rtmp")            # None when sessions are disabled
    collector.admit(client_ip, stream_bitrate)        # optional: raises SessionLimit
    with collector.session(conn_id, reference=path, location=path, peer=client_ip) as s:
        s.ingress(len(chunk))                        # or s.egress(...)
    # the session ends (goes to the history) when the block exits

or the explicit calls ``register_and_activate``, ``ingress``/``egress``, ``unregister``.

Time is injected (``clock``: monotonic seconds, ``wall``: unix seconds), so everything here is
deterministic under test. Sessions registered with ``expires=True`` (HLS, where a viewer just
stops fetching) end after ``session_timeout`` seconds without traffic when :meth:`expire`
runs (the subsystem's tick task calls it once a second). Persistence is explicit:
:meth:`SessionRegistry.save` writes ``<dir>/<collector>.json`` (Core's format) atomically.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Collector", "IpIgnoreList", "SessionLimit", "SessionRegistry", "SlidingWindow"]

log = logging.getLogger(__name__)

AVERAGE_WINDOW = 10.0  # seconds, as Core (prep/average, 1 s granularity)
TOP_DECAY = 0.95  # Core decays a session's top bitrate by 5 % per second
_NAME = re.compile(r"^[0-9A-Za-z]+$")
MAX_HISTORY_KEYS = 100_000  # distinct (local, remote, reference) totals kept per collector
MAX_TRACKED_SESSIONS = 100_000  # sessions (pending + active) per collector, whatever the limits


class SessionLimit(Exception):
    """A new session would exceed a limit; ``str(exc)`` is Core's 509 message."""


def number(value: float) -> float | int:
    """Core's ``toNumber``: integers as integers, else 3 decimals (NaN/inf -> 0)."""
    if not math.isfinite(value):
        return 0
    if value == int(value):
        return int(value)
    return round(value, 3)


class SlidingWindow:
    """Sum of values over the last ``window`` seconds in 1-second buckets; average per second."""

    def __init__(self, window: float = AVERAGE_WINDOW) -> None:
        self.window = window
        self._buckets: deque[list[float]] = deque()  # [second, sum]

    def add(self, now: float, value: float) -> None:
        second = float(int(now))
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += value
        else:
            self._buckets.append([second, value])
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] <= now - self.window:
            self._buckets.popleft()

    def average(self, now: float) -> float:
        """Value per second over the window."""
        self._trim(now)
        return sum(b[1] for b in self._buckets) / self.window


class IpIgnoreList:
    """Client networks whose sessions are not collected (Core's IP limiter with a block list)."""

    def __init__(self, networks: Sequence[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def collectable(self, ip: str) -> bool:
        """False for ignored addresses; an address that does not parse is not collected."""
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0].strip("[]"))
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return not any(addr in net for net in self.networks)


@dataclass
class _Session:
    id: str
    reference: str
    location: str
    peer: str
    created_at: float  # unix seconds
    last_activity: float  # clock seconds
    expires: bool
    extra: str = ""
    active: bool = False
    rx_bytes: int = 0
    tx_bytes: int = 0
    top_rx: float = 0.0
    top_tx: float = 0.0
    rx: SlidingWindow = field(default_factory=SlidingWindow)
    tx: SlidingWindow = field(default_factory=SlidingWindow)


class SessionHandle:
    """What :meth:`Collector.session` yields: accounting calls bound to one session id."""

    def __init__(self, collector: Collector, session_id: str) -> None:
        self.collector = collector
        self.id = session_id

    def ingress(self, size: int) -> None:
        self.collector.ingress(self.id, size)

    def egress(self, size: int) -> None:
        self.collector.egress(self.id, size)

    def extra(self, text: str) -> None:
        self.collector.extra(self.id, text)


class Collector:
    """Sessions of one kind (see module docstring). Not thread-safe: use from the trio thread.

    Args:
        name: the collector's name (letters and digits, as Core).
        max_sessions: 0 = unlimited.
        max_tx_bitrate: bit/s, 0 = unlimited (``sessions.max_bitrate_mbit`` * 1024 * 1024).
        ignore: client networks not collected.
        session_timeout: seconds without traffic after which an expiring session ends.
    """

    def __init__(self, name: str, *, max_sessions: int = 0, max_tx_bitrate: float = 0.0,
                 ignore: IpIgnoreList | None = None, session_timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        if not _NAME.match(name):
            raise ValueError(f"invalid collector name {name!r}: only letters and digits")
        self.name = name
        self.max_sessions = max_sessions
        self.max_tx_bitrate = float(max_tx_bitrate)
        self.ignore = ignore or IpIgnoreList()
        self.session_timeout = session_timeout
        self.clock = clock
        self.wall = wall
        self.companions: list[Collector] = []
        #: set by the registry: this collector's egress shares the bitrate limit of the others
        self.is_companion = False
        self.total_sessions = 0
        self.rx_bytes = 0
        self.tx_bytes = 0
        self._sessions: dict[str, _Session] = {}
        self._rx = SlidingWindow()
        self._tx = SlidingWindow()
        self._last_decay = clock()
        #: finished sessions: "local:remote:reference" -> totals (Core's history format)
        self.history: dict[str, dict[str, Any]] = {}

    # -- admission ---------------------------------------------------------------------------

    def collectable(self, ip: str) -> bool:
        """True when sessions of client ``ip`` are counted (not in the ignore list)."""
        return self.ignore.collectable(ip)

    def admit(self, ip: str, stream_bitrate: float = 0.0, *, count_pending: bool = False,
              reserved: int = 0) -> None:
        """Raise SessionLimit when a new session of client ``ip`` exceeds a limit.

        Core's rules (HLS middleware): ignored clients always pass; ``max_sessions`` counts
        active sessions (``count_pending`` adds the registered, not yet active ones,
        ``reserved`` the admissions still being set up);
        with a bitrate limit, ``2 * stream_bitrate`` (the new viewer, initial peak included)
        plus 1.15 × the top egress bitrates of this collector and its companions must stay
        below it.
        """
        if not self.collectable(ip):
            return
        if self.max_sessions > 0:
            count = (len(self._sessions) if count_pending else self.sessions()) + reserved
            if count >= self.max_sessions:
                raise SessionLimit("Number of sessions exceeded")
        if self.max_tx_bitrate > 0:
            current = sum(c.top_egress_bitrate() for c in (self, *self.companions)) * 1.15
            if current + 2.0 * stream_bitrate >= self.max_tx_bitrate:
                raise SessionLimit("Bitrate limit exceeded")

    # -- session lifecycle -------------------------------------------------------------------

    def register(self, session_id: str, reference: str = "", location: str = "",
                 peer: str = "", *, expires: bool = True) -> None:
        """A new pending session (no-op when ``session_id`` is known or empty)."""
        if not session_id or session_id in self._sessions:
            return
        if len(self._sessions) >= MAX_TRACKED_SESSIONS:  # memory bound: not accounted
            return
        self._sessions[session_id] = _Session(
            id=session_id, reference=reference, location=location or "unknown",
            peer=peer or "unknown", created_at=self.wall(), last_activity=self.clock(),
            expires=expires,
        )

    def activate(self, session_id: str) -> bool:
        """Mark a pending session active (counted); True when it was pending."""
        sess = self._sessions.get(session_id)
        if sess is None or sess.active:
            return False
        sess.active = True
        self.total_sessions += 1
        return True

    def register_and_activate(self, session_id: str, reference: str = "", location: str = "",
                              peer: str = "", *, expires: bool = False) -> None:
        self.register(session_id, reference, location, peer, expires=expires)
        self.activate(session_id)

    def extra(self, session_id: str, text: str) -> None:
        sess = self._sessions.get(session_id)
        if sess is not None:
            sess.extra = text

    def is_known(self, session_id: str) -> bool:
        return session_id in self._sessions

    def unregister(self, session_id: str) -> None:
        """End a session: an active one goes into the history. Idempotent."""
        sess = self._sessions.pop(session_id, None)
        if sess is None or not sess.active:
            return
        key = f"{sess.location}:{sess.peer}:{sess.reference}"
        totals = self.history.get(key)
        if totals is None:
            if len(self.history) >= MAX_HISTORY_KEYS:
                key = "other:other:other"
                totals = self.history.setdefault(key, {
                    "location": "other", "peer": "other", "reference": "other",
                    "total_sessions": 0, "total_rxbytes": 0, "total_txbytes": 0})
            else:
                totals = self.history[key] = {
                    "location": sess.location, "peer": sess.peer, "reference": sess.reference,
                    "total_sessions": 0, "total_rxbytes": 0, "total_txbytes": 0}
        totals["total_sessions"] += 1
        totals["total_rxbytes"] += sess.rx_bytes
        totals["total_txbytes"] += sess.tx_bytes

    @contextlib.contextmanager
    def session(self, session_id: str, reference: str = "", location: str = "",
                peer: str = "") -> Iterator[SessionHandle]:
        """An active session for the duration of the ``with`` block (ends on any exit)."""
        self.register_and_activate(session_id, reference, location, peer, expires=False)
        try:
            yield SessionHandle(self, session_id)
        finally:
            self.unregister(session_id)

    # -- traffic -----------------------------------------------------------------------------

    def ingress(self, session_id: str, size: int) -> None:
        """``size`` bytes received from the session's client."""
        sess = self._sessions.get(session_id)
        if sess is None or size <= 0:
            return
        now = self.clock()
        sess.last_activity = now
        sess.rx_bytes += size
        sess.rx.add(now, size * 8)
        sess.top_rx = max(sess.top_rx, sess.rx.average(now))
        self._rx.add(now, size * 8)
        self.rx_bytes += size

    def egress(self, session_id: str, size: int) -> None:
        """``size`` bytes sent to the session's client."""
        sess = self._sessions.get(session_id)
        if sess is None or size <= 0:
            return
        now = self.clock()
        sess.last_activity = now
        sess.tx_bytes += size
        sess.tx.add(now, size * 8)
        sess.top_tx = max(sess.top_tx, sess.tx.average(now))
        self._tx.add(now, size * 8)
        self.tx_bytes += size

    def set_top_egress_bitrate(self, session_id: str, bitrate: float) -> None:
        sess = self._sessions.get(session_id)
        if sess is not None:
            sess.top_tx = bitrate

    def expire(self) -> list[str]:
        """End expiring sessions idle for ``session_timeout`` s; decay top bitrates. Returns
        the ended ids."""
        now = self.clock()
        steps = int(now - self._last_decay)
        if steps > 0:
            self._last_decay += steps
            factor = TOP_DECAY ** steps
            for sess in self._sessions.values():
                sess.top_rx *= factor
                sess.top_tx *= factor
        stale = [s.id for s in self._sessions.values()
                 if s.expires and now - s.last_activity >= self.session_timeout]
        for session_id in stale:
            self.unregister(session_id)
        return stale

    # -- reading -----------------------------------------------------------------------------

    def sessions(self) -> int:
        """Number of active sessions."""
        return sum(1 for s in self._sessions.values() if s.active)

    def ingress_bitrate(self) -> float:
        return self._rx.average(self.clock())

    def egress_bitrate(self) -> float:
        return self._tx.average(self.clock())

    def top_egress_bitrate(self) -> float:
        return sum(s.top_tx for s in self._sessions.values() if s.active)

    def session_top_ingress_bitrate(self, session_id: str) -> float:
        sess = self._sessions.get(session_id)
        return sess.top_rx if sess is not None else 0.0

    def active(self) -> list[dict[str, Any]]:
        """Active sessions, oldest first, in Core's ``api.Session`` shape."""
        now = self.clock()
        out = []
        for s in sorted((s for s in self._sessions.values() if s.active),
                        key=lambda s: s.created_at):
            out.append({
                "id": s.id, "reference": s.reference, "created_at": int(s.created_at),
                "local": s.location, "remote": s.peer, "extra": s.extra,
                "bytes_rx": s.rx_bytes, "bytes_tx": s.tx_bytes,
                "bandwidth_rx_kbit": number(s.rx.average(now) / 1024),
                "bandwidth_tx_kbit": number(s.tx.average(now) / 1024),
            })
        return out

    def summary(self) -> dict[str, Any]:
        """Core's ``api.SessionSummary``: active sessions and the history's totals (MB)."""
        mb = 1024 * 1024

        def stats(t: dict[str, int]) -> dict[str, int]:
            return {"sessions": t["s"], "traffic_rx_mb": t["rx"] // mb,
                    "traffic_tx_mb": t["tx"] // mb}

        def zero() -> dict[str, int]:
            return {"s": 0, "rx": 0, "tx": 0}

        def add(t: dict[str, int], v: dict[str, Any]) -> None:
            t["s"] += v["total_sessions"]
            t["rx"] += v["total_rxbytes"]
            t["tx"] += v["total_txbytes"]

        peers: dict[str, dict[str, Any]] = {}
        locations: dict[str, dict[str, int]] = {}
        references: dict[str, dict[str, int]] = {}
        total = zero()
        for v in self.history.values():
            p = peers.setdefault(v["peer"], {"t": zero(), "locations": {}})
            add(p["t"], v)
            add(p["locations"].setdefault(v["location"], zero()), v)
            add(locations.setdefault(v["location"], zero()), v)
            add(references.setdefault(v["reference"], zero()), v)
            add(total, v)
        return {
            "active": {
                "list": self.active(),
                "sessions": self.sessions(),
                "bandwidth_rx_mbit": number(self.ingress_bitrate() / mb),
                "bandwidth_tx_mbit": number(self.egress_bitrate() / mb),
                "max_sessions": self.max_sessions,
                "max_bandwidth_rx_mbit": 0,
                "max_bandwidth_tx_mbit": number(self.max_tx_bitrate / mb),
            },
            "summary": {
                "remote": {peer: {**stats(p["t"]),
                                  "local": {k: stats(t) for k, t in p["locations"].items()}}
                           for peer, p in peers.items()},
                "local": {k: stats(t) for k, t in locations.items()},
                "reference": {k: stats(t) for k, t in references.items()},
                **stats(total),
            },
        }

    # -- persistence (Core's format: {"sessions": {key: totals}}) --------------------------

    def history_json(self) -> dict[str, Any]:
        return {"sessions": self.history}

    def load_history(self, data: Any) -> None:
        """Adopt a persisted history (entries that do not fit Core's format are skipped)."""
        sessions = data.get("sessions") if isinstance(data, dict) else None
        if not isinstance(sessions, dict):
            return
        for key, v in list(sessions.items())[:MAX_HISTORY_KEYS]:
            if not isinstance(v, dict):
                continue
            try:
                self.history[str(key)] = {
                    "location": str(v.get("location", "")), "peer": str(v.get("peer", "")),
                    "reference": str(v.get("reference", "")),
                    "total_sessions": int(v.get("total_sessions", 0)),
                    "total_rxbytes": int(v.get("total_rxbytes", 0)),
                    "total_txbytes": int(v.get("total_txbytes", 0)),
                }
            except (TypeError, ValueError):
                continue


class SessionRegistry:
    """Named collectors sharing the limits of ``sessions.*`` (see module docstring).

    ``persist_dir`` (or None): where :meth:`save` writes and :meth:`register` loads
    ``<collector>.json``.
    """

    def __init__(self, *, max_sessions: int = 0, max_tx_bitrate: float = 0.0,
                 ignore: Sequence[str] = (), session_timeout: float = 30.0,
                 persist_dir: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.max_sessions = max_sessions
        self.max_tx_bitrate = max_tx_bitrate
        self.ignore = IpIgnoreList(ignore)
        self.session_timeout = session_timeout
        self.persist_dir = persist_dir
        self.clock = clock
        self.wall = wall
        self.collectors: dict[str, Collector] = {}

    def register(self, name: str, *, limited: bool = True, companions: bool = True
                 ) -> Collector:
        """Create collector ``name`` (ValueError when it exists or the name is invalid).

        ``limited``: the ``sessions.max_*`` limits apply (False for ingest collectors such
        as ``hlsingress``). ``companions``: its egress counts toward the bitrate limit of the
        other companion collectors and theirs toward its own (Core: hls, rtmp, srt, ffmpeg;
        here also webrtc).
        """
        if name in self.collectors:
            raise ValueError(f"a collector with the ID {name!r} already exists")
        collector = Collector(
            name, max_sessions=self.max_sessions if limited else 0,
            max_tx_bitrate=self.max_tx_bitrate if limited else 0.0, ignore=self.ignore,
            session_timeout=self.session_timeout, clock=self.clock, wall=self.wall)
        if companions:
            for other in self.collectors.values():
                if other.is_companion:
                    other.companions.append(collector)
                    collector.companions.append(other)
        collector.is_companion = companions
        self.collectors[name] = collector
        self._load(collector)
        return collector

    def collector(self, name: str) -> Collector | None:
        return self.collectors.get(name)

    def names(self) -> list[str]:
        return sorted(self.collectors)

    def summary(self, name: str) -> dict[str, Any]:
        """The summary of ``name``; an unknown collector gives an empty one (as Core)."""
        collector = self.collectors.get(name)
        if collector is None:
            collector = Collector("empty", clock=self.clock, wall=self.wall)
        return collector.summary()

    def active(self, name: str) -> list[dict[str, Any]]:
        collector = self.collectors.get(name)
        return collector.active() if collector is not None else []

    def expire(self) -> None:
        for collector in self.collectors.values():
            collector.expire()

    # -- persistence -------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        assert self.persist_dir is not None
        return os.path.join(self.persist_dir, f"{name}.json")

    def _load(self, collector: Collector) -> None:
        if self.persist_dir is None:
            return
        try:
            with open(self._path(collector.name), encoding="utf-8") as f:
                collector.load_history(json.load(f))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("sessions: cannot load %s: %s", self._path(collector.name), exc)

    def snapshot(self) -> dict[str, str]:
        """``{path: json text}`` of every collector's history (to write off the trio thread)."""
        if self.persist_dir is None:
            return {}
        return {self._path(name): json.dumps(c.history_json(), indent=4)
                for name, c in self.collectors.items()}

    @staticmethod
    def write(files: dict[str, str]) -> None:
        """Write a :meth:`snapshot` atomically (temp file + rename); blocking file I/O."""
        for path, text in files.items():
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".sessions-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def save(self) -> None:
        """Write every collector's history now (blocking; see :meth:`snapshot`)."""
        self.write(self.snapshot())
