"""Session registry, metrics history and the small pure helpers of observability."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtp.rtcp import rtt_from_report, unix_to_ntp
from trio_core.observability.sessions import (
    Collector,
    IpIgnoreList,
    SessionLimit,
    SessionRegistry,
    SlidingWindow,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def registry(clock: Clock, **kw: object) -> SessionRegistry:
    return SessionRegistry(clock=clock, wall=clock, **kw)  # type: ignore[arg-type]


def test_sliding_window_averages_over_ten_seconds() -> None:
    w = SlidingWindow()
    for second in range(10):
        w.add(100.0 + second, 8000)
    assert w.average(109.5) == pytest.approx(8000)
    assert w.average(115.0) == pytest.approx(8000 * 4 / 10)
    assert w.average(130.0) == 0


def test_ignore_list() -> None:
    ignore = IpIgnoreList(["127.0.0.1/32", "::1/128", "10.0.0.0/8"])
    assert not ignore.collectable("127.0.0.1")
    assert not ignore.collectable("::ffff:10.1.2.3")
    assert not ignore.collectable("garbage")
    assert ignore.collectable("192.0.2.7")
    assert ignore.collectable("2001:db8::1")


def test_collector_lifecycle_history_and_summary() -> None:
    clock = Clock()
    c = registry(clock).register("webrtc")
    c.register("a", "cam", "/whep", "192.0.2.1", expires=False)
    assert c.sessions() == 0 and c.active() == []
    assert c.activate("a") and not c.activate("a")
    for _ in range(5):
        clock.t += 1
        c.egress("a", 125_000)  # 1 Mbit per second
    active = c.active()
    assert [s["id"] for s in active] == ["a"]
    assert active[0]["bytes_tx"] == 625_000
    assert active[0]["bandwidth_tx_kbit"] == pytest.approx(5 * 1_000_000 / 10 / 1024, abs=0.01)
    c.unregister("a")
    c.unregister("a")  # idempotent
    summary = c.summary()
    assert summary["active"]["sessions"] == 0
    assert summary["summary"]["sessions"] == 1
    assert summary["summary"]["reference"]["cam"]["sessions"] == 1
    assert summary["summary"]["remote"]["192.0.2.1"]["local"]["/whep"]["sessions"] == 1
    assert summary["summary"]["traffic_tx_mb"] == 0  # 625 kB rounds down to 0 MB, as Core


def test_pending_sessions_never_reach_the_history() -> None:
    c = registry(Clock()).register("hls")
    c.register("p", "x")
    c.unregister("p")
    assert c.summary()["summary"]["sessions"] == 0


def test_expiry_ends_idle_expiring_sessions_only() -> None:
    clock = Clock()
    c = registry(clock, session_timeout=30).register("hls")
    c.register_and_activate("hls1", expires=True)
    c.register_and_activate("rtmp1", expires=False)
    clock.t += 29
    assert c.expire() == []
    clock.t += 1
    assert c.expire() == ["hls1"]
    assert [s["id"] for s in c.active()] == ["rtmp1"]


def test_session_context_manager_ends_on_error() -> None:
    c = registry(Clock()).register("rtmp")
    with pytest.raises(RuntimeError), c.session("conn1", "live/a", "/live/a", "192.0.2.9") as s:
        s.ingress(1000)
        assert c.sessions() == 1
        raise RuntimeError("connection lost")
    assert c.sessions() == 0
    assert c.summary()["summary"]["sessions"] == 1


def test_limits_as_core() -> None:
    clock = Clock()
    reg = registry(clock, max_sessions=1, max_tx_bitrate=2 * 1024 * 1024,
                   ignore=["127.0.0.1/32"])
    hls = reg.register("hls")
    webrtc = reg.register("webrtc")
    ingest = reg.register("hlsingress", limited=False, companions=False)
    assert ingest.max_sessions == 0 and webrtc in hls.companions and ingest not in hls.companions
    hls.admit("192.0.2.1")
    hls.register_and_activate("v1")
    with pytest.raises(SessionLimit, match="Number of sessions exceeded"):
        hls.admit("192.0.2.2")
    hls.admit("127.0.0.1")  # ignored clients are never limited
    # bitrate: a companion's top egress counts, 2x the new stream's bitrate too
    webrtc.register("w1", expires=False)
    webrtc.admit("192.0.2.3", stream_bitrate=1024 * 1024 * 0.4)  # pending not counted
    with pytest.raises(SessionLimit, match="Number of sessions exceeded"):
        webrtc.admit("192.0.2.3", count_pending=True)
    webrtc.max_sessions = 0
    webrtc.activate("w1")
    webrtc.set_top_egress_bitrate("w1", 1.5 * 1024 * 1024)
    with pytest.raises(SessionLimit, match="Bitrate limit exceeded"):
        webrtc.admit("192.0.2.3", stream_bitrate=1024 * 1024 * 0.2)
    with pytest.raises(ValueError):
        reg.register("hls")
    with pytest.raises(ValueError):
        reg.register("bad-name")


def test_history_persists_in_cores_format(tmp_path: Path) -> None:
    clock = Clock()
    reg = registry(clock, persist_dir=str(tmp_path / "sessions"))
    c = reg.register("hls")
    c.register_and_activate("s1", "stream", "/memfs/stream.m3u8", "example.com")
    c.egress("s1", 3 * 1024 * 1024)
    c.unregister("s1")
    reg.save()
    data = json.loads((tmp_path / "sessions" / "hls.json").read_text())
    entry = data["sessions"]["/memfs/stream.m3u8:example.com:stream"]
    assert entry == {"location": "/memfs/stream.m3u8", "peer": "example.com",
                     "reference": "stream", "total_sessions": 1, "total_rxbytes": 0,
                     "total_txbytes": 3 * 1024 * 1024}
    again = registry(clock, persist_dir=str(tmp_path / "sessions")).register("hls")
    assert again.summary()["summary"]["traffic_tx_mb"] == 3
    (tmp_path / "sessions" / "srt.json").write_text("{not json")
    registry(clock, persist_dir=str(tmp_path / "sessions")).register("srt")  # tolerated


def test_unknown_collector_summary_is_empty() -> None:
    reg = registry(Clock())
    summary = reg.summary("nope")
    assert summary["active"]["list"] == [] and summary["summary"]["remote"] == {}
    assert reg.active("nope") == []


def test_rtt_from_lsr_dlsr() -> None:
    sent = 1_700_000_000.25
    lsr = (unix_to_ntp(sent) >> 16) & 0xFFFFFFFF
    dlsr = int(0.1 * 65536)  # the viewer held the report 100 ms
    rtt = rtt_from_report(lsr, dlsr, sent + 0.13)
    assert rtt == pytest.approx(0.03, abs=0.001)
    assert rtt_from_report(0, dlsr, sent) is None
    assert rtt_from_report(lsr, dlsr, sent) is None  # negative: implausible


def test_collector_names() -> None:
    with pytest.raises(ValueError):
        Collector("")


def test_tracked_sessions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from trio_core.observability import sessions

    monkeypatch.setattr(sessions, "MAX_TRACKED_SESSIONS", 3)
    c = registry(Clock()).register("hls")
    for i in range(10):
        c.register(f"s{i}")
        c.activate(f"s{i}")
    assert c.sessions() == 3
    c.egress("s9", 100)  # never registered: not accounted
    assert c.tx_bytes == 0
