"""SRT server, sans-IO parts: Core's stream-id grammar, the hub's rules, the {srt} placeholder."""

from __future__ import annotations

import pytest

from trio_core.model import ProcessConfig
from trio_core.placeholders import resolve_config
from trio_core.srt.hub import Hub
from trio_core.srt.streamid import StreamId, StreamIdRefused, check_stream_id, parse_stream_id
from trio_core.srt.subsystem import placeholder_template


@pytest.mark.parametrize(("text", "expected"), [
    # Core srt/srt_test.go cases
    ("bla", StreamId("bla", "request", "")),
    ("bla,mode:publish", StreamId("bla", "publish", "")),
    ("123456789", StreamId("123456789", "request", "")),
    ("bla,token:foobar", StreamId("bla", "request", "foobar")),
    ("bla,token:foo,bar", StreamId("bla", "request", "foo,bar")),
    ("123456789,mode:publish,token:foobar", StreamId("123456789", "publish", "foobar")),
    ("mode:publish", StreamId("mode:publish", "request", "")),
    # more: token first, commas in the resource, repeated keys, empty values
    ("a,token:t,mode:publish", StreamId("a", "publish", "t")),
    ("a,b,mode:publish", StreamId("a,b", "publish", "")),
    ("x,mode:", StreamId("x,mode:", "request", "")),
    ("x,token:a,token:b", StreamId("x", "request", "b")),
    ("", StreamId("", "request", "")),
    # legacy form
    ("#!:r=bla,m=publish,token=foobar", StreamId("bla", "publish", "foobar")),
    ("#!:r=bla,m=request", StreamId("bla", "request", "")),
    ("#!:m=publish,junk,r=x,unknown=1", StreamId("x", "publish", "")),
    ("#!:", StreamId("", "", "")),
    ("#!:token=foo,bar", StreamId("", "", "foo")),
    ("#!:key=value", StreamId("", "", "")),
])
def test_parse_stream_id_as_core(text: str, expected: StreamId) -> None:
    assert parse_stream_id(text) == expected


@pytest.mark.parametrize(("text", "token", "status", "message"), [
    ("", "", "INVALID", "stream resource not provided"),
    (",mode:publish", "", "INVALID", "stream resource not provided"),
    ("#!:m=publish", "", "INVALID", "stream resource not provided"),
    ("x,mode:play", "", "INVALID", "invalid connection mode"),
    ("#!:r=x", "", "INVALID", "invalid connection mode"),  # legacy: no default mode
    ("x", "secret", "FORBIDDEN", "token required"),
    ("x,token:wrong", "secret", "FORBIDDEN", "invalid token"),
    ("x" * 600, "", "INVALID", "stream id too long"),
])
def test_check_stream_id_refuses(text: str, token: str, status: str, message: str) -> None:
    with pytest.raises(StreamIdRefused) as info:
        check_stream_id(text, token=token)
    assert (info.value.status, info.value.message) == (status, message)


def test_check_stream_id_accepts_the_right_token() -> None:
    assert check_stream_id("x,mode:publish,token:secret", token="secret") == StreamId(
        "x", "publish", "secret")
    assert check_stream_id("x,token:anything", token="") == StreamId("x", "request", "anything")


def _sid(text: str) -> StreamId:
    return parse_stream_id(text)


def test_hub_one_publisher_many_subscribers_and_publisher_takes_them_along() -> None:
    hub = Hub()
    with pytest.raises(StreamIdRefused) as info:
        hub.add(1, _sid("x"), "peer:1", 0.0)
    assert info.value.status == "NOTFOUND"
    pub = hub.add(10, _sid("x,mode:publish"), "peer:10", 0.0)
    with pytest.raises(StreamIdRefused) as info:
        hub.add(11, _sid("x,mode:publish"), "peer:11", 0.0)
    assert info.value.status == "CONFLICT"
    hub.add(12, _sid("x"), "peer:12", 0.0)
    hub.add(13, _sid("x"), "peer:13", 0.0)
    other = hub.add(20, _sid("y,mode:publish"), "peer:20", 0.0)
    assert {c.sock for c in hub.targets(pub)} == {12, 13}
    assert hub.targets(other) == []
    snap = hub.snapshot()
    assert snap.publishers == {"x": 10, "y": 20}
    assert snap.subscribers == {"x": (12, 13)}
    assert [c.sock for c in hub.remove(12)] == [12]
    assert {c.sock for c in hub.remove(10)} == {10, 13}
    assert hub.remove(10) == []
    assert set(hub.connections) == {20}
    assert hub.snapshot().publishers == {"y": 20}
    hub.add(30, _sid("x,mode:publish"), "peer:30", 0.0)  # the name is free again


def test_hub_limits() -> None:
    hub = Hub(max_connections=3, max_subscribers=1)
    hub.add(1, _sid("x,mode:publish"), "p", 0.0)
    hub.add(2, _sid("x"), "p", 0.0)
    with pytest.raises(StreamIdRefused) as info:
        hub.add(3, _sid("x"), "p", 0.0)
    assert (info.value.status, info.value.message) == ("LIMIT", "too many subscribers")
    hub.add(3, _sid("y,mode:publish"), "p", 0.0)
    with pytest.raises(StreamIdRefused) as info:
        hub.add(4, _sid("z,mode:publish"), "p", 0.0)
    assert (info.value.status, info.value.message) == ("LIMIT", "too many connections")


def test_subscriber_queue_is_bounded_and_slowness_is_judged() -> None:
    hub = Hub(max_queue_bytes=3000, max_backlog_ms=1000)
    pub = hub.add(1, _sid("x,mode:publish"), "p", 0.0)
    sub = hub.add(2, _sid("x"), "p", 0.0)
    assert sub.enqueue(b"a" * 1316) and sub.enqueue(b"b" * 1316)
    assert not sub.enqueue(b"c" * 1316)  # would exceed 3000 bytes: refused, nothing queued
    assert sub.queued_bytes == 2632 and len(sub.queue) == 2
    assert sub.peek() == b"a" * 1316
    sub.pop()
    assert sub.peek() == b"b" * 1316 and sub.queued_bytes == 1316
    assert not hub.too_slow(sub, 999)
    assert hub.too_slow(sub, 1001)
    assert not hub.too_slow(pub, 10_000)  # a publisher is never "too slow"


def _process(address: str, section: str) -> ProcessConfig:
    io = [{"id": "io", "address": address}]
    other = [{"id": "o", "address": "-"}]
    return ProcessConfig.from_json({
        "id": "p1", "reference": "ref",
        "input": io if section == "input" else other,
        "output": io if section == "output" else other,
    })


def test_srt_placeholder_resolves_as_core_per_section() -> None:
    values = {"srt": placeholder_template("127.0.0.1", 6000)}
    got = resolve_config(_process("{srt,name=cam}", "input"), values).input[0].address
    assert got == ("srt://127.0.0.1:6000?mode=caller&transtype=live&latency=20000"
                   "&streamid=cam,mode:request")
    got = resolve_config(_process("{srt,name=$processid,latency=500000}", "output"),
                         values).output[0].address
    assert got == ("srt://127.0.0.1:6000?mode=caller&transtype=live&latency=500000"
                   "&streamid=p1,mode:publish")
    # Restreamer UI adds mode=request: not a template variable, ignored
    got = resolve_config(_process("{srt,name=cam.stream,mode=request}", "input"),
                         values).input[0].address
    assert got.endswith("&streamid=cam.stream,mode:request")


def test_srt_placeholder_with_token_passphrase_and_wildcard_hosts() -> None:
    t = placeholder_template("", 6001, token="tok", passphrase="pass phrase!")
    got = resolve_config(_process("{srt,name=x}", "output"), {"srt": t}).output[0].address
    assert got == ("srt://127.0.0.1:6001?mode=caller&transtype=live&latency=20000"
                   "&streamid=x,mode:publish,token:tok&passphrase=pass%20phrase%21")
    assert str(placeholder_template("::", 1)).startswith("srt://[::1]:1?")
    assert str(placeholder_template("10.0.0.5", 1)).startswith("srt://10.0.0.5:1?")
    # without a value the placeholder stays as written
    got = resolve_config(_process("{srt,name=x}", "input"), {}).input[0].address
    assert got == "{srt,name=x}"


def test_refusal_rate_limit_counts_what_it_suppresses() -> None:
    from trio_core.srt.ratelimit import RateLimit

    limit = RateLimit(3)
    assert [limit.take(100.0) for _ in range(5)] == [0, 0, 0, None, None]
    assert limit.take(100.1) is None  # 0.3 tokens refilled: still over
    assert limit.take(100.5) == 3  # a token again; reports the 3 suppressed meanwhile
    assert limit.take(110.0) == 0  # refilled to the burst (3), nothing suppressed since


def test_core_stats_maps_libsrt_fields_and_never_yields_nan() -> None:
    import json

    from trio_core.srt.binding import BStats
    from trio_core.srt.server import core_stats

    raw = BStats()
    raw.byteRecvTotal, raw.pktSentTotal, raw.msRTT = 123456, 42, 0.25
    raw.pktRcvAvgBelatedTime = float("nan")  # what libsrt reports before any late packet
    raw.mbpsBandwidth = float("inf")
    stats = core_stats(raw)
    assert (stats["recv_bytes"], stats["sent_pkt"], stats["rtt_ms"]) == (123456, 42, 0.25)
    assert stats["pkt_recv_avg_belated_time_ms"] == 0 and stats["bandwidth_mbit"] == 0.0
    json.dumps(stats, allow_nan=False)
    assert len(stats) == 47  # every field of Core's api.SRTStatistics, nothing else


def test_libsrt_log_lines_are_filtered() -> None:
    from trio_core.srt.liblog import classify

    got = classify(5, "SRT.cn", "Listener managed the connection request from: "
                   "127.0.0.1:5000 result:INVALID")
    assert got == "SRT handshake from 127.0.0.1:5000 rejected"
    got = classify(4, "processConnectRequest: ",
                   "processConnectRequest: rsp(REJECT): 1010 - Incorrect passphrase")
    assert got == "libsrt: processConnectRequest: rsp(REJECT): 1010 - Incorrect passphrase"
    # the server's own non-blocking accept, and per-connection notices: not logged
    assert classify(3, "SRT.cn", "srt_accept: no pending connection available at the moment") is None
    assert classify(5, "SRT.cn", "PASSING request from: 127.0.0.1:5000 to agent:1") is None


def test_load_names_what_is_missing() -> None:
    from trio_core.srt.binding import SrtUnavailable, load

    with pytest.raises(SrtUnavailable) as info:
        load(names=("libsrt-does-not-exist.so.9",), finder=lambda name: None)
    assert "libsrt1.5-openssl" in str(info.value)
    assert "libsrt-does-not-exist.so.9" in str(info.value)
    lib = load()  # the real one (installed by .ci/run)
    assert lib.version.startswith("1.")


# -- SRT connections as sessions (trio_core.srt.sessions) ------------------------------------


class _Stats:
    def __init__(self, rx: int, tx: int) -> None:
        self.byteRecvTotal, self.byteSentTotal = rx, tx


class _FakeServer:
    """What SrtSessions reads: the published snapshot and libsrt's per-socket byte totals."""

    def __init__(self) -> None:
        from trio_core.srt.hub import EMPTY_SNAPSHOT
        self.snapshot = EMPTY_SNAPSHOT
        self.bytes: dict[int, tuple[int, int]] = {}
        self.lib = self

    def bstats(self, sock: int) -> _Stats:
        from trio_core.srt.binding import SrtError
        if sock not in self.bytes:
            raise SrtError("srt_bstats", 5004, "closed")
        return _Stats(*self.bytes[sock])


def test_srt_sessions_follow_the_snapshot() -> None:
    from trio_core.observability.sessions import SessionRegistry
    from trio_core.srt.hub import Snapshot
    from trio_core.srt.sessions import SrtSessions, peer_ip

    assert peer_ip("10.0.0.1:5000") == "10.0.0.1" and peer_ip("[::1]:9") == "::1"
    registry = SessionRegistry(ignore=["10.9.0.0/16"], clock=lambda: 100.0, wall=lambda: 1e9)
    srt = registry.register("srt")
    server = _FakeServer()
    sessions = SrtSessions(server, lambda: srt)  # type: ignore[arg-type]
    # a publisher, a subscriber and an ignored subscriber
    server.snapshot = Snapshot({"live": 1}, {"live": (2, 3)},
                               {1: "10.0.0.1:5000", 2: "10.0.0.2:6000", 3: "10.9.0.3:7000"})
    server.bytes = {1: (1000, 50), 2: (40, 700), 3: (10, 900)}
    sessions.sync()
    server.bytes = {1: (3000, 80), 2: (60, 2700), 3: (10, 5000)}
    sessions.sync()
    active = {s["id"]: s for s in srt.active()}
    assert set(active) == {"live", "10.0.0.2:6000"}
    assert active["live"]["local"] == "publish:live"
    assert active["live"]["remote"] == "10.0.0.1:5000"
    assert (active["live"]["bytes_rx"], active["live"]["bytes_tx"]) == (3000, 80)
    assert active["10.0.0.2:6000"]["local"] == "play:live"
    assert active["10.0.0.2:6000"]["reference"] == "live"
    assert (active["10.0.0.2:6000"]["bytes_rx"], active["10.0.0.2:6000"]["bytes_tx"]) == (60, 2700)
    # the publisher reconnects (new socket, same resource) and the subscriber leaves
    server.snapshot = Snapshot({"live": 4}, {}, {4: "10.0.0.1:5001"})
    server.bytes = {4: (500, 0)}
    sessions.sync()
    active = {s["id"]: s for s in srt.active()}
    assert set(active) == {"live"}
    assert active["live"]["remote"] == "10.0.0.1:5001" and active["live"]["bytes_rx"] == 500
    assert srt.summary()["summary"]["sessions"] == 2  # the first publisher and the subscriber ended
    sessions.close()
    assert srt.active() == [] and srt.summary()["summary"]["sessions"] == 3
