"""trio_core.storage.subsystem: the ``{memfs}`` URL FFmpeg writes to (wildcards → loopback,
IPv6 bracketed, credentials escaped)."""

from __future__ import annotations

from trio_core.storage.subsystem import memfs_url


def test_memfs_url() -> None:
    assert memfs_url("0.0.0.0", 8080, None) == "http://127.0.0.1:8080/memfs"
    assert memfs_url("", 8080, None) == "http://127.0.0.1:8080/memfs"
    assert memfs_url("::", 81, None) == "http://[::1]:81/memfs"
    assert memfs_url("10.0.0.5", 81, ("wri ter", "p@ss:w/d")) == \
        "http://wri%20ter:p%40ss%3Aw%2Fd@10.0.0.5:81/memfs"
