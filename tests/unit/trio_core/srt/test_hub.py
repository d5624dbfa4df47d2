"""trio_core.srt.hub: one publisher, many subscribers, limits, bounded subscriber queues.

The SRT relay's policies (``trio_core/srt/hub.py``), written from the hub's behaviour before
it ran on the shared relay core: admission (CONFLICT / NOTFOUND / LIMIT, also over a snapshot
as libsrt's handshake thread checks it), one publisher per resource taking its subscribers
along, the subscriber queue's byte bound and the "too slow" verdict. Pure: no libsrt.
"""

from __future__ import annotations

import pytest

from trio_core.srt.hub import Hub, check_against
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


def sid(text: str) -> StreamId:
    return parse_stream_id(text)


def refusal(fn: object, *args: object) -> tuple[str, str, str]:
    with pytest.raises(StreamIdRefused) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.status, info.value.message, info.value.resource


def test_answers_conflict_notfound_limit_with_cores_messages() -> None:
    hub = Hub(max_connections=4, max_subscribers=2)
    assert refusal(hub.add, 1, sid("cam"), "p", 0.0) == (
        "NOTFOUND", "no publisher for this resource found", "cam")
    hub.add(1, sid("cam,mode:publish"), "p", 0.0)
    assert refusal(hub.add, 2, sid("cam,mode:publish"), "p", 0.0) == (
        "CONFLICT", "already publishing", "cam")
    hub.add(2, sid("cam"), "p", 0.0)
    hub.add(3, sid("cam"), "p", 0.0)
    assert refusal(hub.add, 4, sid("cam"), "p", 0.0) == ("LIMIT", "too many subscribers", "cam")
    hub.add(4, sid("other,mode:publish"), "p", 0.0)
    # the total limit counts publishers and subscribers, and is checked first
    assert refusal(hub.add, 5, sid("cam,mode:publish"), "p", 0.0) == (
        "LIMIT", "too many connections", "cam")
    assert set(hub.connections) == {1, 2, 3, 4}  # refusals register nothing


def test_check_is_the_same_rule_over_a_snapshot_and_registers_nothing() -> None:
    hub = Hub(max_connections=10, max_subscribers=1)
    hub.add(1, sid("a,mode:publish"), "p:1", 0.0)
    snap = hub.snapshot()
    hub.check(sid("a"))
    check_against(snap, sid("a"), 10, 1)
    assert hub.connections.keys() == {1}
    hub.add(2, sid("a"), "p:2", 0.0)
    assert refusal(hub.check, sid("a"))[0] == "LIMIT"
    # the old snapshot still says there is room (the accept-time check catches the race)
    check_against(snap, sid("a"), 10, 1)
    assert refusal(check_against, hub.snapshot(), sid("a"), 10, 1)[0] == "LIMIT"
    assert refusal(check_against, hub.snapshot(), sid("b"), 10, 1)[0] == "NOTFOUND"
    assert refusal(check_against, hub.snapshot(), sid("a,mode:publish"), 10, 1)[0] == "CONFLICT"
    assert refusal(check_against, hub.snapshot(), sid("b,mode:publish"), 2, 1)[0] == "LIMIT"


def test_a_socket_registers_once() -> None:
    hub = Hub()
    hub.add(1, sid("a,mode:publish"), "p", 0.0)
    with pytest.raises(ValueError):
        hub.add(1, sid("b,mode:publish"), "p", 0.0)


def test_publisher_leaving_takes_only_its_subscribers_and_frees_the_name() -> None:
    hub = Hub()
    a = hub.add(1, sid("a,mode:publish"), "p:1", 5.0)
    assert (a.resource, a.mode, a.peer, a.created_at) == ("a", "publish", "p:1", 5.0)
    hub.add(2, sid("a"), "p:2", 0.0)
    hub.add(3, sid("b,mode:publish"), "p:3", 0.0)
    hub.add(4, sid("b"), "p:4", 0.0)
    removed = hub.remove(1)
    assert [c.sock for c in removed] == [1, 2]  # the publisher first, then its subscribers
    assert set(hub.connections) == {3, 4}
    snap = hub.snapshot()
    assert snap.publishers == {"b": 3} and snap.subscribers == {"b": (4,)}
    assert snap.peers == {3: "p:3", 4: "p:4"}
    assert [c.sock for c in hub.remove(4)] == [4]
    assert hub.snapshot().subscribers == {}  # no empty entries left behind
    assert hub.subscriber_list() == []
    assert hub.remove(99) == []
    hub.add(5, sid("a,mode:publish"), "p", 0.0)  # "a" can be published again


def test_targets_are_the_subscribers_of_the_publishers_resource() -> None:
    hub = Hub()
    pub = hub.add(1, sid("a,mode:publish"), "p", 0.0)
    assert hub.targets(pub) == []
    subs = [hub.add(s, sid("a"), "p", 0.0) for s in (2, 3, 4)]
    assert hub.targets(pub) == subs
    hub.remove(3)
    assert hub.targets(pub) == [subs[0], subs[2]]
    assert {c.sock for c in hub.subscriber_list()} == {2, 4}


def test_subscriber_queue_takes_up_to_exactly_its_bound() -> None:
    hub = Hub(max_queue_bytes=3 * 1316)
    hub.add(1, sid("a,mode:publish"), "p", 0.0)
    sub = hub.add(2, sid("a"), "p", 0.0)
    assert sub.max_queue_bytes == 3 * 1316
    assert sub.peek() is None
    for i in range(3):
        assert sub.enqueue(bytes([i]) * 1316)
    assert sub.queued_bytes == 3 * 1316  # exactly the bound fits
    assert not sub.enqueue(b"x")  # one byte more: refused, nothing queued
    assert sub.queued_bytes == 3 * 1316 and len(sub.queue) == 3
    # the refusal dropped the subscriber (the server ends it): counted, nothing more queued
    assert hub.counters.drops == 1 and hub.counters.skips == 0
    sub.pop()
    assert not sub.enqueue(b"y")
    assert hub.counters.drops == 1
    order = []
    while (payload := sub.peek()) is not None:
        order.append(payload[0])
        sub.pop()
    assert order == [1, 2] and sub.queued_bytes == 0


def test_too_slow_judges_backlog_and_queue_of_subscribers_only() -> None:
    hub = Hub(max_queue_bytes=1000, max_backlog_ms=5000)
    pub = hub.add(1, sid("a,mode:publish"), "p", 0.0)
    sub = hub.add(2, sid("a"), "p", 0.0)
    assert not hub.too_slow(sub, 5000)  # at the bound: fine
    assert hub.too_slow(sub, 5001)
    assert not hub.too_slow(pub, 1_000_000)


def test_defaults_are_todays_values() -> None:
    hub = Hub()
    assert (hub.max_connections, hub.max_subscribers) == (1024, 256)
    assert hub.max_queue_bytes == 4 * 1024 * 1024 and hub.max_backlog_ms == 5000
