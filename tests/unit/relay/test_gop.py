"""relay.gop.GopCache: start at a GOP start, byte and unit bounds, overflow waits for the
next GOP start, snapshots stay consistent."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from relay import GopCache


@dataclass
class U:
    name: str
    size: int
    keyframe: bool = False


def test_nothing_is_kept_before_the_first_gop_start() -> None:
    gop: GopCache[U] = GopCache(1000)
    assert not gop.push(U("p", 10), False)
    assert len(gop) == 0 and not gop and gop.first is None and gop.gops == 0
    assert gop.push(U("k", 10, True), True)
    assert gop.push(U("p", 10), False)
    assert [u.name for u in gop] == ["k", "p"] and gop.bytes == 20 and gop.gops == 1
    assert gop.first is not None and gop.first.name == "k"


def test_a_gop_start_replaces_the_gop_and_old_snapshots_stay_intact() -> None:
    gop: GopCache[U] = GopCache(1000)
    gop.push(U("k1", 10, True), True)
    gop.push(U("p1", 10), False)
    snapshot = gop.units
    gop.push(U("k2", 30, True), True)
    gop.push(U("p2", 10), False)
    assert [u.name for u in snapshot] == ["k1", "p1"]  # not mutated
    assert [u.name for u in gop.units] == ["k2", "p2"] and gop.bytes == 40 and gop.gops == 2


def test_a_keyframe_unit_that_does_not_start_a_gop_continues_it() -> None:
    gop: GopCache[U] = GopCache(1000)
    gop.push(U("stap", 10, True), True)
    gop.push(U("idr", 10, True), False)  # same access unit
    assert [u.name for u in gop] == ["stap", "idr"] and gop.gops == 1


def test_byte_bound_overflow_empties_and_waits_for_the_next_start() -> None:
    gop: GopCache[U] = GopCache(100)
    gop.push(U("k", 40, True), True)
    assert gop.push(U("a", 60), False)  # exactly the bound: kept
    assert gop.bytes == 100
    snapshot = gop.units
    assert not gop.push(U("b", 1), False)  # one byte more: emptied
    assert len(gop) == 0 and gop.bytes == 0 and gop.overflows == 1
    assert [u.name for u in snapshot] == ["k", "a"]
    assert not gop.push(U("c", 1), False)  # still waiting
    assert gop.push(U("k2", 1, True), True)
    assert [u.name for u in gop] == ["k2"]


def test_a_gop_start_larger_than_the_bound_is_not_kept() -> None:
    gop: GopCache[U] = GopCache(100)
    assert not gop.push(U("huge", 101, True), True)
    assert not gop.push(U("p", 1), False)
    assert len(gop) == 0 and gop.gops == 1 and gop.overflows == 1


def test_unit_bound() -> None:
    gop: GopCache[U] = GopCache(10**9, max_units=3)
    gop.push(U("k", 1, True), True)
    gop.push(U("a", 1), False)
    assert gop.push(U("b", 1), False) and len(gop) == 3
    assert not gop.push(U("c", 1), False) and len(gop) == 0
    unbounded: GopCache[U] = GopCache(10**9)
    unbounded.push(U("k", 1, True), True)
    for i in range(5000):
        unbounded.push(U(str(i), 1), False)
    assert len(unbounded) == 5001


def test_clear_waits_for_the_next_start_and_bounds_are_checked() -> None:
    gop: GopCache[U] = GopCache(100)
    gop.push(U("k", 1, True), True)
    gop.clear()
    assert not gop.push(U("p", 1), False) and len(gop) == 0
    with pytest.raises(ValueError):
        GopCache(-1)
    with pytest.raises(ValueError):
        GopCache(1, max_units=-1)
