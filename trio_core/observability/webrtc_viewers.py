"""WebRTC viewers as sessions (collector ``webrtc``), admission for WHEP, Prometheus aggregates.

:class:`WebRTCViewers` follows the Forwarder's Peers. The WHEP route calls, through the
admission object the composition root hands it (``whep_blueprint(..., admission=viewers)``):

* ``admit(request, process_id)`` **before** anything is allocated: raises
  ``ApiError(509, "Number of sessions exceeded" | "Bitrate limit exceeded")`` when
  ``sessions.max_sessions`` / ``sessions.max_bitrate_mbit`` would be exceeded (viewers still
  connecting count too, so a burst of offers cannot overshoot); clients in
  ``sessions.ip_ignorelist`` are neither limited nor counted, as in Core;
  an admitted offer holds a reserved slot until ``opened`` or the end of its request
  (``teardown_request`` -> :meth:`WebRTCViewers.release`), so concurrent offers cannot
  overshoot the limit while they wait for negotiation;
* ``opened(request, process_id, peer)`` right after the Peer exists: registers the session
  (reference = the process's ``reference`` or id, local = the WHEP path, remote = client
  IP, extra = User-Agent) and starts following the Peer.

:meth:`WebRTCViewers.sync` (called every second by the subsystem and before every read)
moves each Peer's byte counter delta into the session (egress), activates the session when
DTLS is up (observing the setup time in the ``webrtc_setup_seconds`` histogram), the viewer's
SRTCP bytes into it as ingress, and ends it
when the Peer has closed, keeping the counters of closed viewers per process so that the
Prometheus ``*_total`` series never go backwards. Everything is synchronous (no I/O).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trio_core.http.errors import ApiError
from trio_core.observability.monitor import Description, Value
from trio_core.observability.sessions import Collector, SessionLimit
from trio_core.web import g

if TYPE_CHECKING:
    from prometheus_client import Histogram

    from rtp.forwarder import Forwarder
    from rtp.peer import Peer
    from trio_core.web import Request

__all__ = ["WebRTCSource", "WebRTCViewers"]

SETUP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)
COUNTERS = ("packets", "bytes", "retransmitted", "send_dropped", "nacks", "plis", "firs",
            "srtp_dropped", "viewers")


def session_id(peer_id: str) -> str:
    """The public session id of a viewer (the WHEP resource id is a secret)."""
    return hashlib.sha256(peer_id.encode()).hexdigest()[:22]


@dataclass(eq=False)
class _Tracked:
    peer: Peer
    process_id: str
    session: str | None  # registered session id, None when not collected
    last_bytes: int = 0
    last_rx: int = 0
    setup_seen: bool = False


class WebRTCViewers:
    """See module docstring. ``forwarder``: returns the running Forwarder (or None)."""

    def __init__(self, forwarder: Callable[[], Forwarder | None], collector: Collector | None,
                 supervisor: Any) -> None:
        self.forwarder = forwarder
        self.collector = collector
        self.supervisor = supervisor
        self._setup_seconds: Histogram | None = None
        #: counters of viewers that have closed, per process (see COUNTERS)
        self.closed: dict[str, Counter[str]] = {}
        self._tracked: dict[str, _Tracked] = {}
        self._source_rate: dict[str, tuple[float, int, float]] = {}  # id -> (t, bytes, bit/s)
        #: admitted offers still being negotiated (count toward max_sessions)
        self.reserved = 0

    @property
    def setup_seconds(self) -> Histogram:
        """The ``webrtc_setup_seconds`` histogram, made on first use (the first connected
        viewer or the Prometheus registry): prometheus_client is not imported before."""
        if self._setup_seconds is None:
            from prometheus_client import Histogram

            self._setup_seconds = Histogram(
                "webrtc_setup_seconds", "Seconds from the WHEP offer to DTLS-SRTP up, per viewer",
                buckets=SETUP_BUCKETS, registry=None)
        return self._setup_seconds

    # -- WHEP route calls ----------------------------------------------------------------

    def admit(self, request: Request, process_id: str) -> None:
        """Raise ApiError 509 when a new viewer would exceed a session limit; else reserve a
        slot until :meth:`opened` or the end of the request (:meth:`release`), so that
        concurrent offers cannot overshoot the limit while they are negotiated."""
        if self.collector is None:
            return
        self.sync()
        try:
            self.collector.admit(request.remote_addr or "", self.stream_bitrate(process_id),
                                 count_pending=True, reserved=self.reserved)
        except SessionLimit as exc:
            raise ApiError(509, str(exc), "sessions.max_sessions / sessions.max_bitrate_mbit"
                           ) from None
        if self.collector.collectable(request.remote_addr or ""):
            self.reserved += 1
            g.trio_core_whep_reserved = True

    def release(self) -> None:
        """End the current request's reservation (idempotent; teardown_request calls it)."""
        if g.get("trio_core_whep_reserved"):
            g.trio_core_whep_reserved = False
            self.reserved -= 1

    def opened(self, request: Request, process_id: str, peer: Peer) -> None:
        """Start following ``peer`` (and account it as a session unless ignored)."""
        self.release()
        sid: str | None = None
        ip = request.remote_addr or ""
        if self.collector is not None and self.collector.collectable(ip):
            sid = session_id(peer.id)
            reference = process_id
            try:
                reference = self.supervisor.get(process_id).config.reference or process_id
            except KeyError:
                pass
            self.collector.register(sid, reference, f"/api/v3/process/{process_id}/whep", ip,
                                    expires=False)
            self.collector.extra(sid, request.headers.get("User-Agent", "")[:200])
        self._tracked[peer.id] = _Tracked(peer, process_id, sid)

    # -- bookkeeping ---------------------------------------------------------------------

    def stream_bitrate(self, process_id: str) -> float:
        """The process's current WebRTC source bitrate (bit/s) as last measured by sync."""
        entry = self._source_rate.get(process_id)
        return entry[2] if entry is not None else 0.0

    def measured_sources(self) -> list[str]:
        """Process ids whose source bitrate is being measured (the open Sources)."""
        return list(self._source_rate)

    def sync(self) -> None:
        """Follow the Peers (see module docstring)."""
        forwarder = self.forwarder()
        now = time.monotonic()
        live: dict[str, Peer] = {}
        if forwarder is not None:
            for process_id, source in list(forwarder.sources.items()):
                received = sum(st.bytes for st in source.state.values())
                last = self._source_rate.get(process_id)
                if last is None or received < last[1]:
                    self._source_rate[process_id] = (now, received, 0.0)
                elif now - last[0] >= 1.0:
                    rate = (received - last[1]) * 8 / (now - last[0])
                    self._source_rate[process_id] = (now, received, rate)
                for peer in list(source.peers.values()):
                    live[peer.id] = peer
                    if peer.id not in self._tracked:
                        self._tracked[peer.id] = _Tracked(peer, process_id, None)
            for process_id in [p for p in self._source_rate if p not in forwarder.sources]:
                del self._source_rate[process_id]
        for peer_id, tracked in list(self._tracked.items()):
            self._account(tracked)
            if tracked.peer.closed or peer_id not in live:
                self._finish(tracked)
                del self._tracked[peer_id]

    def _account(self, t: _Tracked) -> None:
        peer = t.peer
        if not t.setup_seen and peer.connected_at is not None:
            t.setup_seen = True
            self.setup_seconds.observe(max(0.0, peer.connected_at - peer.created))
            if t.session is not None and self.collector is not None:
                self.collector.activate(t.session)
        sent = sum(track.bytes for track in peer.out.values())
        received = getattr(peer, "rtcp_bytes", 0)
        if t.session is not None and self.collector is not None:
            if sent > t.last_bytes:
                self.collector.egress(t.session, sent - t.last_bytes)
            if received > t.last_rx:
                self.collector.ingress(t.session, received - t.last_rx)
        t.last_bytes, t.last_rx = sent, received

    def _finish(self, t: _Tracked) -> None:
        totals = self.closed.setdefault(t.process_id, Counter())
        for key, value in peer_counters(t.peer).items():
            totals[key] += value
        totals["viewers"] += 1
        if t.session is not None and self.collector is not None:
            self.collector.unregister(t.session)

    def forget_missing(self, ids: set[str]) -> None:
        """Drop the closed-viewer totals of processes that no longer exist."""
        for pid in [p for p in self.closed if p not in ids]:
            del self.closed[pid]

    def peers(self) -> list[tuple[str, Peer]]:
        """(process id, Peer) of every open viewer."""
        forwarder = self.forwarder()
        if forwarder is None:
            return []
        return [(pid, peer) for pid, source in list(forwarder.sources.items())
                for peer in list(source.peers.values())]


def peer_counters(peer: Peer) -> Counter[str]:
    """A viewer's cumulative counters (see COUNTERS)."""
    out: Counter[str] = Counter()
    for track in peer.out.values():
        out["packets"] += track.packets
        out["bytes"] += track.bytes
        out["retransmitted"] += track.retransmitted
        out["send_dropped"] += track.dropped
    out["nacks"] += peer.nacks
    out["plis"] += peer.plis
    out["firs"] += peer.firs
    out["srtp_dropped"] += sum(n for reason, n in peer.dropped.items()
                               if reason.startswith("srtp"))
    return out


class WebRTCSource:
    """Metric source for the history (``/api/v3/metrics``): ``webrtc_viewers{processid}``
    (open viewers), ``webrtc_txbytes{processid}`` (bytes sent, closed viewers included) and
    ``webrtc_txbitrate{processid}`` (bit/s over the sessions' 10 s window is not per
    process, so this is the source's measured input rate times the connected viewers)."""

    def __init__(self, viewers: WebRTCViewers) -> None:
        self.viewers = viewers
        labels = ("processid",)
        self.count = Description("webrtc_viewers", "Number of open WebRTC viewers", labels)
        self.tx = Description("webrtc_txbytes", "Bytes sent to WebRTC viewers", labels)
        self.rate = Description("webrtc_txbitrate", "Estimated bit/s sent to WebRTC viewers "
                                "(input rate x connected viewers)", labels)

    def describe(self) -> Sequence[Description]:
        return [self.count, self.tx, self.rate]

    def collect(self) -> Iterable[Value]:
        self.viewers.sync()
        count: Counter[str] = Counter()
        connected: Counter[str] = Counter()
        sent: Counter[str] = Counter()
        for pid, totals in self.viewers.closed.items():
            sent[pid] += totals["bytes"]
        for pid, peer in self.viewers.peers():
            count[pid] += 1
            connected[pid] += 1 if peer.live else 0
            sent[pid] += sum(t.bytes for t in peer.out.values())
        out = []
        for pid in sorted(set(count) | set(sent) | set(self.viewers.measured_sources())):
            out.append(Value.of(self.count, count[pid], pid))
            out.append(Value.of(self.tx, sent[pid], pid))
            out.append(Value.of(self.rate, self.viewers.stream_bitrate(pid) * connected[pid],
                                pid))
        return out
