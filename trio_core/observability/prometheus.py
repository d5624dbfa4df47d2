"""Prometheus exposition (``GET /metrics``): Core's metric names plus trio-core's WebRTC ones.

Everything is read at scrape time by custom collectors registered in a per-app
:class:`prometheus_client.CollectorRegistry` (never the global one):

* :class:`CoreMetrics` maps the monitor's values (:mod:`trio_core.observability.metric_sources`) to the names and labels of
  Core's ``prometheus/*.go`` (label ``core`` = the instance id): ``uptime_seconds``,
  ``cpu_{system,user,idle,other}_time_percent``, ``mem_{total,free}_bytes``,
  ``net_{rx,tx}_bytes{interface}``, ``disk_{total,usage}_bytes{path}``,
  ``filesystem_{limit_bytes,usage_bytes,files}{name}``,
  ``ffmpeg_process{process,state,order,name}``, ``ffmpeg_process_states{process,state}``,
  ``ffmpeg_process_io{process,type,id,index,stream,media,name}``, ``ffmpeg_states{state}``,
  ``ffmpeg_states_total{state}``, ``session_{total,active,rx_bytes,tx_bytes}{collector}``.
  Core's Go client exposes some counters without a ``_total`` suffix, which
  prometheus_client cannot produce; those keep Core's *names* and are typed ``gauge``.
* :class:`WebRTCMetrics` (names ``webrtc_*``): viewers per process and state, packets/bytes
  sent, retransmissions, NACKs, PLIs/FIRs, send and SRTP drops (``*_total`` counters that
  include closed viewers), pending sessions, the receiver-report aggregates over the open
  viewers of a process (``stat`` = ``avg``/``max``: fraction lost, jitter, RTT; never one
  series per viewer), the source side (packets/bytes received per track) and the UDP mux's
  drops by reason; plus the ``webrtc_setup_seconds`` histogram.
* :class:`RelayMetrics` (names ``relay_*``, label ``server`` = ``rtmp``/``srt``/``webrtc``):
  the shared relay policy's numbers (:class:`relay.RelayStats`) of each running relay —
  ``relay_readers`` (open players/subscribers/viewers), ``relay_reader_queued_bytes``,
  ``relay_reader_skips_total`` (a reader's queue overflowed: it skipped to the next keyframe),
  ``relay_reader_drops_total`` (a reader dropped as too slow) and ``relay_gop_cache_bytes``.
  A relay without a policy (WebRTC has no reader queue, SRT no GOP cache) has no series for it.
* :class:`SenderPoolMetrics`: the native sender pool's workers (issue 18, shared with the RTMP
  players since issue 23) — ``webrtc_fanout_ring_drops_total{worker}``: live packets (WebRTC)
  and live messages (RTMP) not queued because that worker's ring was full (dropped for every
  viewer/player of its stripe; each then counts its own drop or skips to the next keyframe),
  and ``webrtc_fanout_workers``; no series while no pool runs (no compiler, nothing open).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from relay import RelayStats
from trio_core.observability.monitor import Monitor, Pattern
from trio_core.observability.webrtc_viewers import WebRTCViewers, peer_counters

__all__ = ["CoreMetrics", "RelayMetrics", "SenderPoolMetrics", "WebRTCMetrics", "build_registry",
           "exposition"]

# monitor name -> (prometheus name, help, kind, monitor labels to export in order)
_CORE: dict[str, tuple[str, str, str, tuple[tuple[str, str], ...]]] = {
    "uptime_uptime": ("uptime_seconds", "Number of seconds the core is up", "gauge", ()),
    "cpu_system": ("cpu_system_time_percent", "CPU system time in percent", "gauge", ()),
    "cpu_user": ("cpu_user_time_percent", "CPU user time in percent", "gauge", ()),
    "cpu_idle": ("cpu_idle_time_percent", "CPU idle time in percent", "gauge", ()),
    "cpu_other": ("cpu_other_time_percent", "CPU other time in percent", "gauge", ()),
    "mem_total": ("mem_total_bytes", "Total available memory in bytes", "gauge", ()),
    "mem_free": ("mem_free_bytes", "Free memory in bytes", "gauge", ()),
    "net_rx": ("net_rx_bytes", "Number of received bytes by interface", "gauge",
               (("interface", "interface"),)),
    "net_tx": ("net_tx_bytes", "Number of sent bytes by interface", "gauge",
               (("interface", "interface"),)),
    "disk_total": ("disk_total_bytes", "disk_total_bytes", "gauge", (("path", "path"),)),
    "disk_usage": ("disk_usage_bytes", "disk_usage_bytes", "gauge", (("path", "path"),)),
    "filesystem_limit": ("filesystem_limit_bytes", "filesystem_limit_bytes", "gauge",
                         (("name", "name"),)),
    "filesystem_usage": ("filesystem_usage_bytes", "filesystem_usage_bytes", "gauge",
                         (("name", "name"),)),
    "filesystem_files": ("filesystem_files", "filesystem_files", "gauge", (("name", "name"),)),
    "restream_process": ("ffmpeg_process", "General stats per process", "gauge",
                         (("process", "processid"), ("state", "state"), ("order", "order"),
                          ("name", "name"))),
    "restream_process_states": ("ffmpeg_process_states", "Accumulated states per process",
                                "gauge", (("process", "processid"), ("state", "state"))),
    "restream_io": ("ffmpeg_process_io", "Stats per input and output of a process", "gauge",
                    (("process", "processid"), ("type", "type"), ("id", "id"),
                     ("index", "index"), ("stream", "stream"), ("media", "media"),
                     ("name", "name"))),
    "restream_state": ("ffmpeg_states", "Current process states", "gauge",
                       (("state", "state"),)),
    "ffmpeg_process": ("ffmpeg_states_total", "Accumulated process states", "counter",
                       (("state", "state"),)),
    "session_total": ("session_total", "Total number of sessions by collector", "counter",
                      (("collector", "collector"),)),
    "session_active": ("session_active", "Current number of active sessions by collector",
                       "gauge", (("collector", "collector"),)),
    "session_rxbytes": ("session_rx_bytes", "Total received bytes by collector", "gauge",
                        (("collector", "collector"),)),
    "session_txbytes": ("session_tx_bytes", "Total sent bytes by collector", "gauge",
                        (("collector", "collector"),)),
}


class CoreMetrics:
    """Core's Prometheus metrics from the monitor (see module docstring)."""

    def __init__(self, monitor: Monitor, core_id: str) -> None:
        self.monitor = monitor
        self.core_id = core_id

    def describe(self) -> Iterable[Metric]:
        return []  # no fixed set: sources may be added later (e.g. memfs)

    def collect(self) -> Iterator[Metric]:
        names = [n for n in self.monitor.names() if n in _CORE]
        families: dict[str, Metric] = {}
        for value in self.monitor.collect([Pattern(n) for n in names]):
            prom_name, doc, kind, labels = _CORE[value.name]
            family = families.get(prom_name)
            if family is None:
                label_names = ["core", *(p for p, _ in labels)]
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                family = families[prom_name] = cls(prom_name, doc, labels=label_names)
            family.add_metric([self.core_id, *(value.label(m) for _, m in labels)],
                              value.value)
        yield from families.values()


def _avg_max(values: list[float]) -> tuple[float, float]:
    return (sum(values) / len(values), max(values)) if values else (0.0, 0.0)


class WebRTCMetrics:
    """trio-core's WebRTC metrics (see module docstring)."""

    def __init__(self, viewers: WebRTCViewers, process_ids: Callable[[], list[str]]) -> None:
        self.viewers = viewers
        self.process_ids = process_ids

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        self.viewers.sync()
        ids = set(self.process_ids())
        self.viewers.forget_missing(ids)
        totals: dict[str, Counter[str]] = defaultdict(Counter)
        for pid, counts in self.viewers.closed.items():
            totals[pid].update(counts)
        states: dict[str, Counter[str]] = defaultdict(Counter)
        loss: dict[tuple[str, str], list[float]] = defaultdict(list)
        jitter: dict[tuple[str, str], list[float]] = defaultdict(list)
        rtt: dict[str, list[float]] = defaultdict(list)
        lost: Counter[tuple[str, str]] = Counter()
        for pid, peer in self.viewers.peers():
            totals[pid].update(peer_counters(peer))
            totals[pid]["viewers"] += 1
            states[pid]["connected" if peer.live else "connecting"] += 1
            for kind, report in peer.receiver_reports.items():
                loss[pid, kind].append(float(report["fraction_lost"] or 0))
                jitter[pid, kind].append(float(report["jitter_seconds"] or 0))
                lost[pid, kind] += int(report["packets_lost"] or 0)
                if report.get("rtt_seconds") is not None:
                    rtt[pid].append(float(report["rtt_seconds"]))  # type: ignore[arg-type]

        viewers = GaugeMetricFamily("webrtc_viewers", "Open WebRTC viewers per process",
                                    labels=["process", "state"])
        pending = GaugeMetricFamily("webrtc_pending_sessions",
                                    "WebRTC viewers negotiated but not connected yet")
        for pid in sorted(ids | set(states)):
            for state in ("connected", "connecting"):
                viewers.add_metric([pid, state], states[pid][state])
        pending.add_metric([], sum(s["connecting"] for s in states.values()))
        yield viewers
        yield pending

        def counter(name: str, doc: str, key: str) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["process"])
            for pid in sorted(totals):
                family.add_metric([pid], totals[pid][key])
            return family

        yield counter("webrtc_viewer_sessions", "WebRTC viewers ever negotiated per process",
                      "viewers")
        yield counter("webrtc_sent_packets", "RTP packets sent to viewers", "packets")
        yield counter("webrtc_sent_bytes", "SRTP bytes sent to viewers", "bytes")
        yield counter("webrtc_retransmitted_packets",
                      "Packets resent (NACK answers, keyframe resends)", "retransmitted")
        yield counter("webrtc_nacks", "RTCP NACKs received from viewers", "nacks")
        yield counter("webrtc_plis", "RTCP PLIs received from viewers", "plis")
        yield counter("webrtc_firs", "RTCP FIRs received from viewers", "firs")
        yield counter("webrtc_send_dropped_packets",
                      "Packets not sent to a viewer (socket full, SRTP refusal)", "send_dropped")
        yield counter("webrtc_srtp_dropped", "SRTP/SRTCP packets from viewers dropped "
                      "(authentication, replay, malformed)", "srtp_dropped")

        fraction = GaugeMetricFamily("webrtc_viewer_fraction_lost",
                                     "Fraction of packets lost reported by viewers (RTCP RR)",
                                     labels=["process", "kind", "stat"])
        jit = GaugeMetricFamily("webrtc_viewer_jitter_seconds",
                                "Interarrival jitter reported by viewers (RTCP RR)",
                                labels=["process", "kind", "stat"])
        for (pid, kind), values in sorted(loss.items()):
            avg, peak = _avg_max(values)
            fraction.add_metric([pid, kind, "avg"], avg)
            fraction.add_metric([pid, kind, "max"], peak)
            avg, peak = _avg_max(jitter[pid, kind])
            jit.add_metric([pid, kind, "avg"], avg)
            jit.add_metric([pid, kind, "max"], peak)
        lost_family = GaugeMetricFamily("webrtc_viewer_packets_lost",
                                        "Cumulative packets lost reported by the open viewers",
                                        labels=["process", "kind"])
        for (pid, kind), value in sorted(lost.items()):
            lost_family.add_metric([pid, kind], value)
        rtt_family = GaugeMetricFamily("webrtc_viewer_rtt_seconds",
                                       "Round-trip time to viewers from RTCP RR (LSR/DLSR)",
                                       labels=["process", "stat"])
        for pid, values in sorted(rtt.items()):
            avg, peak = _avg_max(values)
            rtt_family.add_metric([pid, "avg"], avg)
            rtt_family.add_metric([pid, "max"], peak)
        yield fraction
        yield jit
        yield lost_family
        yield rtt_family

        forwarder = self.viewers.forwarder()
        if forwarder is None:
            return
        src_packets = CounterMetricFamily("webrtc_source_packets",
                                          "RTP packets received from FFmpeg per track",
                                          labels=["process", "kind"])
        src_bytes = CounterMetricFamily("webrtc_source_bytes",
                                        "RTP bytes received from FFmpeg per track",
                                        labels=["process", "kind"])
        for pid, source in sorted(forwarder.sources.items()):
            for kind, st in source.state.items():
                src_packets.add_metric([pid, kind], st.packets)
                src_bytes.add_metric([pid, kind], st.bytes)
        yield src_packets
        yield src_bytes
        mux = forwarder.mux
        received = CounterMetricFamily("webrtc_mux_received_datagrams",
                                       "Datagrams received on the WebRTC UDP port")
        received.add_metric([], mux.received)
        yield received
        dropped = CounterMetricFamily("webrtc_mux_dropped_datagrams",
                                      "Datagrams dropped by the WebRTC UDP mux, by reason",
                                      labels=["reason"])
        for reason, count in sorted(mux.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        tcp = forwarder.tcp
        if tcp is None:
            return
        # ICE-TCP (issue 21): connections, refusals and closes by reason, frames dropped
        open_conns = GaugeMetricFamily("webrtc_tcp_connections",
                                       "Open ICE-TCP connections (bound to a viewer or not)")
        open_conns.add_metric([], len(tcp.connections))
        yield open_conns
        accepted = CounterMetricFamily("webrtc_tcp_accepted_connections",
                                       "ICE-TCP connections accepted")
        accepted.add_metric([], tcp.accepted)
        yield accepted
        bound = CounterMetricFamily("webrtc_tcp_bound_connections",
                                    "ICE-TCP connections whose STUN check found their viewer")
        bound.add_metric([], tcp.bound)
        yield bound
        for name, doc, counts in (
                ("webrtc_tcp_refused_connections",
                 "ICE-TCP connections closed at accept (limit-total, limit-per-ip)",
                 tcp.refused),
                ("webrtc_tcp_closed_connections",
                 "ICE-TCP connections closed, by reason (stun-timeout, not-stun, eof, ...)",
                 tcp.closed),
                ("webrtc_tcp_dropped_frames",
                 "ICE-TCP frames not delivered, by reason (queue-full, malformed STUN, ...)",
                 tcp.dropped)):
            family = CounterMetricFamily(name, doc, labels=["reason"])
            for reason, count in sorted(counts.items()):
                family.add_metric([reason], count)
            yield family


class RelayMetrics:
    """The ``relay_*`` metrics (see module docstring) of the relays ``relays()`` returns
    (server name -> :class:`relay.RelayStats`), read at scrape time."""

    def __init__(self, relays: Callable[[], dict[str, RelayStats]]) -> None:
        self.relays = relays

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = sorted(self.relays().items())
        families = (
            (GaugeMetricFamily, "relay_readers",
             "Open relay readers (RTMP players, SRT subscribers, WebRTC viewers)", "readers"),
            (GaugeMetricFamily, "relay_reader_queued_bytes",
             "Bytes waiting in relay readers' queues", "queued_bytes"),
            (CounterMetricFamily, "relay_reader_skips",
             "Reader queue overflows that skipped to the next keyframe", "skips"),
            (CounterMetricFamily, "relay_reader_drops",
             "Relay readers dropped as too slow", "drops"),
            (GaugeMetricFamily, "relay_gop_cache_bytes",
             "Bytes held in relay GOP caches (what new readers start on)", "gop_bytes"),
        )
        for cls, name, doc, field in families:
            family = cls(name, doc, labels=["server"])
            for server, st in stats:
                value = getattr(st, field)
                if value is not None:
                    family.add_metric([server], value)
            yield family


class SenderPoolMetrics:
    """The native sender pool's per-worker ring drops (see the module docstring), read from
    :func:`rtp.sender_pool.current` at scrape time."""

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from rtp import sender_pool

        engine = sender_pool.current()
        if engine is None:
            return
        stats = engine.stats()
        workers = GaugeMetricFamily("webrtc_fanout_workers",
                                    "Threads of the native sender pool (WebRTC fan-out, RTMP players)")
        workers.add_metric([], len(stats))
        yield workers
        drops = CounterMetricFamily(
            "webrtc_fanout_ring_drops",
            "Live packets/messages not queued because the worker's ring was full", labels=["worker"])
        for i, worker in enumerate(stats):
            drops.add_metric([str(i)], worker["ring_drops"])
        yield drops


def build_registry(monitor: Monitor, core_id: str, viewers: WebRTCViewers | None,
                   process_ids: Callable[[], list[str]],
                   relays: Callable[[], dict[str, RelayStats]] | None = None,
                   collectors: Sequence[object] = ()) -> CollectorRegistry:
    """A registry with the Core metrics and, when given, the WebRTC and relay ones and other
    subsystems' ``collectors`` (e.g. the cluster's, issue 20)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CoreMetrics(monitor, core_id))  # type: ignore[arg-type]
    registry.register(SenderPoolMetrics())  # type: ignore[arg-type]
    if viewers is not None:
        registry.register(WebRTCMetrics(viewers, process_ids))  # type: ignore[arg-type]
        registry.register(viewers.setup_seconds)
    if relays is not None:
        registry.register(RelayMetrics(relays))  # type: ignore[arg-type]
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return generate_latest(registry), CONTENT_TYPE_LATEST

