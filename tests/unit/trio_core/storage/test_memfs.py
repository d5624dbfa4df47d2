"""trio_core.storage.memfs: size limits as Core, uploads in flight, purge."""

from __future__ import annotations

import pytest

from trio_core.storage.memfs import MemFS, NoSpace


def test_memfs_size_limit_as_core() -> None:
    clock = iter(range(100, 1000))
    fs = MemFS(max_size=100, clock=lambda: float(next(clock)))
    assert fs.write("/a", b"x" * 60) is True
    assert fs.write("/a", b"y" * 70) is False  # replace: the old size does not count twice
    assert fs.used == 70
    with pytest.raises(NoSpace, match="not enough space on device"):
        fs.write("/b", b"z" * 40)
    with pytest.raises(NoSpace, match="File is too big"):
        fs.write("/c", b"z" * 101)
    assert fs.used == 70 and fs.reserved == 0 and len(fs) == 1  # failed writes left nothing
    # a reader keeps the bytes it opened while the file is replaced
    held = fs.open("/a")
    assert held is not None
    fs.write("/a", b"q" * 10)
    assert held.data == b"y" * 70 and fs.open("/a").data == b"q" * 10  # type: ignore[union-attr]


def test_memfs_uploads_in_flight_count_and_purge() -> None:
    clock = iter(range(100, 1000))
    fs = MemFS(max_size=100, purge=True, clock=lambda: float(next(clock)))
    fs.write("/old", b"1" * 40)
    fs.write("/mid", b"2" * 40)
    upload = fs.begin_write("/new")
    upload.feed(b"3" * 10)
    assert fs.reserved == 10 and fs.open("/new") is None  # not visible before commit
    upload.feed(b"3" * 30)  # 40+40+40 > 100: the oldest file goes
    assert fs.open("/old") is None and fs.open("/mid") is not None
    assert upload.commit() is True
    assert fs.used == 80 and fs.reserved == 0
    # an abandoned upload releases its reservation
    other = fs.begin_write("/x")
    other.feed(b"4" * 5)
    other.discard()
    assert fs.reserved == 0 and fs.open("/x") is None
    assert sorted(f.name for f in fs.list("/*")) == ["/mid", "/new"]
