"""trio_core.storage.mounts: HTTP Range header parsing."""

from __future__ import annotations

from trio_core.storage.mounts import parse_range


def test_range_header() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 4)
    assert parse_range("bytes=5-", 10) == (5, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=8-100", 10) == (8, 9)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=1-2,4-5", 10) is None
    assert parse_range("items=1-2", 10) is None
