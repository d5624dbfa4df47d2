"""trio_core.web.context: the proxies follow the bound request, also in tasks started inside,
and refuse use outside a request."""

from __future__ import annotations

import pytest
import trio
from werkzeug.datastructures import Headers

from trio_core.web.app import App
from trio_core.web.context import RequestContext, bound, current_app, g, request
from trio_core.web.wrappers import Request


def make(path: str) -> Request:
    return Request("GET", "http", None, "", path, b"", Headers(), None)


async def test_proxies_follow_the_bound_request() -> None:
    app = App(__name__)
    with pytest.raises(RuntimeError):
        _ = request.path
    seen: list[str] = []
    with bound(RequestContext(app, make("/a"))):
        g.value = 1
        assert request.path == "/a" and current_app is not None and g.get("value") == 1
        with bound(RequestContext(app, make("/b"))):
            assert request.path == "/b" and g.get("value") is None and "value" not in g

        async def look() -> None:
            seen.append(request.path)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(look)
        assert request.path == "/a"
    assert seen == ["/a"]
