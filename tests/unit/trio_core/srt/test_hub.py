"""trio_core.srt.hub: one publisher, many subscribers, limits, bounded subscriber queues."""

from __future__ import annotations

import pytest

from trio_core.srt.hub import Hub
from trio_core.srt.streamid import StreamId, StreamIdRefused, parse_stream_id


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
