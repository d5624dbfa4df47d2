"""relay.queue.ReaderQueue: start at a keyframe, byte bound, skip to keyframe, drop after N
skips, control data, counters, consumer side."""

from __future__ import annotations

from relay import Offer, ReaderQueue, RelayCounters


def q(max_bytes: int = 100, max_skips: int = 2, **kw: object) -> ReaderQueue[str]:
    return ReaderQueue(max_bytes, max_skips, **kw)  # type: ignore[arg-type]


def test_the_first_unit_queued_is_a_keyframe() -> None:
    r = q()
    assert r.wants(True) and not r.wants(False)
    assert r.offer(False, 10, "p") is Offer.WAITING
    assert r.offer(True, 10, "k-head", "k-body") is Offer.QUEUED
    assert r.offer(False, 10, "p") is Offer.QUEUED
    assert list(r.queue) == ["k-head", "k-body", "p"] and r.queued_bytes == 20 and r.units == 2
    free = q(start_at_keyframe=False)
    assert free.offer(False, 10, "p") is Offer.QUEUED


def test_byte_bound_skip_to_keyframe_and_resume() -> None:
    counters = RelayCounters()
    r = q(100, 2, counters=counters)
    r.offer(True, 60, "k")
    assert r.offer(False, 40, "a") is Offer.QUEUED  # exactly the bound fits
    assert r.offer(False, 1, "b") is Offer.SKIPPED
    assert not r.queue and r.queued_bytes == 0 and r.waiting_keyframe and r.skips == 1
    assert r.offer(False, 1, "c") is Offer.WAITING
    assert r.offer(True, 10, "k2") is Offer.QUEUED
    r.offer(False, 90, "d")
    assert r.offer(True, 50, "k3") is Offer.RESUMED  # overflow on a keyframe: restart there
    assert list(r.queue) == ["k3"] and r.queued_bytes == 50 and not r.waiting_keyframe
    assert r.skips == 2 and counters.skips == 2 and counters.drops == 0


def test_the_overflow_after_max_skips_drops_and_leaves_the_queue_to_the_owner() -> None:
    counters = RelayCounters()
    r = q(100, 1, counters=counters)
    r.offer(True, 100, "k")
    assert r.offer(True, 100, "k2") is Offer.RESUMED
    assert r.offer(False, 1, "x") is Offer.DROPPED
    assert r.dropped and r.skips == 2 and counters.skips == 1 and counters.drops == 1
    assert list(r.queue) == ["k2"]  # untouched; the owner discards it
    assert not r.wants(True)
    assert r.offer(True, 1, "y") is Offer.CLOSED and r.push(1, "reply") is Offer.CLOSED
    r.drop()
    assert counters.drops == 1  # counted once
    r.clear()
    assert not r.queue and r.queued_bytes == 0


def test_zero_skips_drops_at_the_first_overflow() -> None:
    r = q(10, 0, start_at_keyframe=False)
    assert r.offer(False, 10, "a") is Offer.QUEUED
    assert r.offer(False, 1, "b") is Offer.DROPPED and r.dropped
    assert list(r.queue) == ["a"]


def test_pushed_control_data_is_never_skipped_but_bounded() -> None:
    counters = RelayCounters()
    r = q(100, 3, counters=counters)
    for _ in range(10):
        assert r.push(20, "reply") is Offer.QUEUED  # 200 bytes: twice the bound, still fine
    assert r.queued_bytes == 200
    assert r.push(1, "one more") is Offer.DROPPED
    assert r.dropped and not r.queue and r.queued_bytes == 0 and counters.drops == 1


def test_close_refuses_units_but_takes_pushes_and_can_be_drained() -> None:
    r = q()
    r.offer(True, 10, "k")
    r.close()
    assert r.offer(True, 10, "k2") is Offer.CLOSED
    assert r.push(5, "bye") is Offer.QUEUED
    assert list(r.drain()) == ["k", "bye"] and r.queued_bytes == 0 and not r.queue


def test_peek_and_pop_one_at_a_time() -> None:
    r = q(start_at_keyframe=False)
    assert r.peek() is None
    r.offer(False, 3, "abc")
    r.offer(False, 2, "de")
    assert r.peek() == "abc"
    assert r.pop(3) == "abc" and r.queued_bytes == 2 and r.peek() == "de"
