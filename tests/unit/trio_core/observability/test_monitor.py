"""trio_core.observability.monitor: label patterns, the history ring and resampling, series JSON."""

from __future__ import annotations

import json

import pytest

from trio_core.observability.monitor import Description, History, Monitor, Pattern, Value


class Fake:
    def __init__(self) -> None:
        self.desc = Description("thing", "a thing", ("kind",))
        self.n = 0

    def describe(self) -> list[Description]:
        return [self.desc]

    def collect(self) -> list[Value]:
        self.n += 1
        return [Value.of(self.desc, self.n, "a"), Value.of(self.desc, -self.n, "b")]


def test_patterns_match_label_regexps() -> None:
    m = Monitor()
    m.register(Fake())
    assert len(m.collect([Pattern("thing")])) == 2
    assert [v.label("kind") for v in m.collect([Pattern("thing", {"kind": "^b$"})])] == ["b"]
    assert m.collect([Pattern("thing", {"kind": "("})]) == []  # invalid regexp
    assert m.collect([Pattern("thing", {"other": "."})]) == []
    assert m.collect([Pattern("unknown")]) == []


def test_history_ring_and_resampling() -> None:
    now = [1000.0]
    m = Monitor()
    m.register(Fake())
    h = History(m, 10, 2, wall=lambda: now[0])
    assert h.ring.maxlen == 5
    for _ in range(8):
        now[0] += 2
        h.sample()
    assert len(h.ring) == 5
    points = h.query(10, 2, [Pattern("thing", {"kind": "a"})])
    assert len(points) == 5
    # Core's resampling: points from now - range - interval on; before the first kept
    # snapshot no data, then the snapshot at or before each point
    assert [p.ts for p in points] == [1004, 1006, 1008, 1010, 1012]
    assert [p.values[0].value if p.values else None for p in points] == [None, None, 4, 5, 6]
    with pytest.raises(ValueError):
        h.query(10**9, 1, [Pattern("thing")])
    with pytest.raises(ValueError):
        History(m, 1, 2)


def test_series_json_numbers_as_core() -> None:
    from trio_core.observability.monitor import Snapshot, series_json

    desc = Description("x", "x", ("k",))
    values = [Value.of(desc, 2.0, "int"), Value.of(desc, 1.23456, "float"),
              Value.of(desc, float("nan"), "nan"), Value.of(desc, float("inf"), "inf")]
    out = series_json([Snapshot(1000.7, values), Snapshot(1001.0, None)])
    assert [(s["labels"]["k"], s["values"]) for s in out] == [
        ("int", [[1000, 2]]), ("float", [[1000, 1.235]]), ("nan", [[1000, 0]]),
        ("inf", [[1000, 0]])]
    assert json.dumps(out)  # valid JSON (no NaN/Infinity)
