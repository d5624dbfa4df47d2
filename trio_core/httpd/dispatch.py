"""Direct routes in front of the general handler: the hot requests skip the framework.

:class:`Dispatch` is a server handler (:data:`trio_core.httpd.server.Handler`): a request whose
target starts with one of the registered prefixes is offered to that prefix's
:data:`Direct` route first (the first matching prefix only); the route answers it and
returns True, or returns False **without having read or sent anything** to let the general
handler (the ASGI app) answer — so a direct route only handles the cases it knows exactly
(the common ones) and leaves every other case (errors, auth failures, ranges, …) to the app,
whose answers stay the reference.

Cancellation: as the routes' own (they run in the connection's task).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from trio_core.httpd.server import Channel, Handler

__all__ = ["Direct", "Dispatch"]

#: ``await route(channel)`` -> True when answered, False to pass the request on untouched
Direct = Callable[[Channel], Awaitable[bool]]


class Dispatch:
    """``routes``: ``(target prefix, route)`` pairs tried in order; ``fallback`` the rest."""

    def __init__(self, fallback: Handler, routes: Sequence[tuple[bytes, Direct]] = ()) -> None:
        self.fallback = fallback
        self.routes = list(routes)

    async def __call__(self, channel: Channel) -> None:
        request = channel.request
        assert request is not None
        target = request.target
        for prefix, route in self.routes:
            if target.startswith(prefix):
                if await route(channel):
                    return
                break
        await self.fallback(channel)
