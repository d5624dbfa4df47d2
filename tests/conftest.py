"""Shared fixtures (the FFmpeg binary) and the run order.

Shared helpers live in ``tests/helpers/`` (leak checks: ``tests/helpers/leaks.py``).

Order: tests of an ``xdist_group`` first (the ``interop`` group — browsers, GStreamer and the
interop sessions, one after another in one worker — is the longest chain of the suite), then
the other ``slow`` tests, then the rest; with ``--dist loadgroup`` the long ones then start at
once instead of last (the order within each rank is the collection order).
"""

from __future__ import annotations

import os

import pytest
import trio

from trio_core.ffmpeg.binary import check_version, find_ffmpeg


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """Absolute path of the FFmpeg binary used by the integration tests."""
    return find_ffmpeg(os.environ.get("CORE_FFMPEG_BINARY", ""))


@pytest.fixture(scope="session")
def ffmpeg_version(ffmpeg: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of that FFmpeg (None for a build without a version number):
    tests of features older FFmpeg lacks (Debian's 5.1) ask it."""
    return trio.run(check_version, ffmpeg)




def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Grouped tests first (bigger groups before smaller), then slow ones, then the rest
    (a stable sort: the same order in every worker)."""

    def group(item: pytest.Item) -> str | None:
        marker = item.get_closest_marker("xdist_group")
        return None if marker is None else str(marker.args[0] if marker.args else marker.kwargs["name"])

    sizes: dict[str, int] = {}
    for item in items:
        name = group(item)
        if name is not None:
            sizes[name] = sizes.get(name, 0) + 1

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = group(item)
        if name is not None:
            return (0, -sizes[name])
        return (1, 0) if item.get_closest_marker("slow") is not None else (2, 0)

    items.sort(key=rank)
