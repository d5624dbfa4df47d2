"""The shared ``relay_*`` Prometheus names (label ``server``) over the real relays' state:
an RTMP server's players (skip, drop), an SRT hub's subscribers (queue-full drop), a WebRTC
forwarder's GOP caches. Also: the ``relay.*`` settings and their defaults."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from relay import RelayStats
from rtp.forwarder import Forwarder
from rtp.packet import build_rtp
from rtp.source import Source
from trio_core.config.settings import load_config
from trio_core.observability.monitor import Monitor
from trio_core.observability.prometheus import build_registry, exposition
from trio_core.rtmp.registry import Player
from trio_core.rtmp.server import RtmpServer
from trio_core.rtmp.subsystem import rtmp_server
from trio_core.srt.hub import Hub
from trio_core.srt.server import SrtServer
from trio_core.srt.streamid import parse_stream_id
from trio_core.webrtc.subsystem import forwarder


def samples(relays: dict[str, RelayStats]) -> dict[tuple[str, str], float]:
    registry = build_registry(Monitor(), "core", None, lambda: [], relays=lambda: relays)
    text = exposition(registry)[0].decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("relay_") and not s.name.endswith("_created"):
                out[s.name, s.labels["server"]] = s.value
    return out


def test_relay_metrics_of_rtmp_srt_and_webrtc() -> None:
    rtmp = RtmpServer(max_queue_bytes=200, max_skips=1)
    channel = rtmp.registry.publish("/live/a")
    assert channel is not None
    channel.on_media(9, 0, b"\x17\x01\x00\x00\x00" + bytes(50))
    slow = Player("a", 1, 4096, max_queue_bytes=200, max_skips=1,
                  counters=rtmp.relay_counters)
    ok = Player("a", 1, 4096, max_queue_bytes=10_000, max_skips=1,
                counters=rtmp.relay_counters)
    channel.add_player(slow)
    channel.add_player(ok)
    for i in range(1, 4):
        channel.on_media(9, i * 40, b"\x27\x01\x00\x00\x00" + bytes(100))
    assert slow.skips == 1 and not slow.dropped
    channel.on_media(9, 200, b"\x17\x01\x00\x00\x00" + bytes(300))  # > 200: second overflow
    assert slow.dropped

    hub = Hub(max_queue_bytes=1000)
    srt = SrtServer(hub=hub)
    hub.add(1, parse_stream_id("x,mode:publish"), "p", 0.0)
    sub = hub.add(2, parse_stream_id("x"), "p", 0.0)
    assert sub.enqueue(b"a" * 600)
    assert not sub.enqueue(b"b" * 600)
    hub.add(3, parse_stream_id("x"), "p", 0.0).enqueue(b"c" * 100)
    srt._snapshot = hub.snapshot()  # what the I/O thread publishes after every change

    fwd = Forwarder()
    fwd.sources["cam"] = source = Source("cam")
    stap_a = bytes([0x18, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xCE])
    source.on_datagram("video", build_rtp(96, 1, 0, 5, stap_a), 0.0)

    got = samples({"rtmp": rtmp.relay_stats(), "srt": srt.relay_stats(),
                   "webrtc": fwd.relay_stats()})
    assert got["relay_readers", "rtmp"] == 2
    assert got["relay_reader_skips_total", "rtmp"] == 1
    assert got["relay_reader_drops_total", "rtmp"] == 1
    assert got["relay_reader_queued_bytes", "rtmp"] == slow.queued_bytes + ok.queued_bytes > 0
    assert got["relay_gop_cache_bytes", "rtmp"] == channel.gop_bytes == 305
    assert got["relay_readers", "srt"] == 2
    assert got["relay_reader_drops_total", "srt"] == 1
    assert got["relay_reader_skips_total", "srt"] == 0
    assert got["relay_reader_queued_bytes", "srt"] == 700
    assert ("relay_gop_cache_bytes", "srt") not in got  # SRT keeps no GOP
    assert got["relay_readers", "webrtc"] == 0
    assert got["relay_gop_cache_bytes", "webrtc"] == len(build_rtp(96, 1, 0, 5, stap_a))
    assert ("relay_reader_drops_total", "webrtc") not in got  # no reader queue


def test_relay_settings_defaults_and_env() -> None:
    cfg = load_config(None, env={})
    assert cfg["relay.gop_max_bytes"] == 32 * 1024 * 1024
    assert cfg["relay.gop_max_packets"] == 4000
    assert cfg["relay.queue_max_bytes"] == 8 * 1024 * 1024
    assert cfg["relay.max_skips"] == 3
    assert cfg["relay.srt_queue_max_bytes"] == 4 * 1024 * 1024
    assert cfg["relay.srt_max_backlog_ms"] == 5000
    cfg = load_config(None, env={"CORE_RELAY_MAX_SKIPS": "0",
                                 "CORE_RELAY_QUEUE_MAX_BYTES": "1000"})
    assert cfg["relay.max_skips"] == 0 and cfg["relay.queue_max_bytes"] == 1000
    env = {"CORE_RELAY_GOP_MAX_BYTES": "5000", "CORE_RELAY_GOP_MAX_PACKETS": "7",
           "CORE_RELAY_QUEUE_MAX_BYTES": "6000", "CORE_RELAY_MAX_SKIPS": "1"}
    rtmp = rtmp_server(load_config(None, env=env))
    assert (rtmp.max_queue_bytes, rtmp.max_skips, rtmp.registry.max_gop_bytes) == (6000, 1, 5000)
    fwd = forwarder(load_config(None, env=env))
    assert (fwd.gop_max_bytes, fwd.gop_max_packets) == (5000, 7)
    try:
        load_config(None, env={"CORE_RELAY_QUEUE_MAX_BYTES": "0"})
    except ValueError as exc:
        assert "relay.queue_max_bytes" in str(exc)
    else:
        raise AssertionError("a 0-byte player queue must be refused")
