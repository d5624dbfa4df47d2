"""Dispatch: a direct route answers the requests it knows, passes the rest untouched."""

from __future__ import annotations

from typing import Any

from trio_core.httpd.connection import Request
from trio_core.httpd.dispatch import Dispatch


class FakeChannel:
    def __init__(self, target: bytes) -> None:
        self.request = Request("GET", target, "1.1", [], None, False, True, False)
        self.answered_by = ""


async def test_first_matching_prefix_then_fallback() -> None:
    seen: list[str] = []

    async def direct(channel: Any) -> bool:
        seen.append("direct")
        if channel.request.target.endswith(b"/known"):
            channel.answered_by = "direct"
            return True
        return False

    async def other(channel: Any) -> bool:
        seen.append("other")
        return True

    async def fallback(channel: Any) -> None:
        channel.answered_by = "app"

    dispatch = Dispatch(fallback, [(b"/a/", direct), (b"/a/", other)])
    for target, by in ((b"/a/known", "direct"), (b"/a/unknown", "app"), (b"/b/known", "app")):
        channel = FakeChannel(target)
        await dispatch(channel)  # type: ignore[arg-type]
        assert channel.answered_by == by
    assert seen == ["direct", "direct"]  # only the first matching prefix is tried
