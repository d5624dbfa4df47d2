"""The loopback HTTP/1.1 endpoint that ``{memfs}`` points FFmpeg at.

Why a second listener: FFmpeg writes to memfs with ``-method PUT`` and credentials in the URL,
but it only sends ``Authorization`` after a 401 challenge, and it asks for that challenge with
``Expect: 100-continue`` before sending the body. Go's server (datarhei Core) answers 401
right away, and so does trio-core's server (:mod:`trio_core.httpd`): it sends ``100 Continue``
only when the application starts reading the body — after the Basic-auth check passed — so
FFmpeg retries with its credentials. (hypercorn, which served the public port before, always
sent ``100 Continue`` first: that is why this endpoint was made.) It stays a listener of its
own on ``127.0.0.1`` with an ephemeral port: FFmpeg's wrong-credential backoff is counted
apart from the public port's (the scope extension ``trio_core.loopback``), and FFmpeg's
uploads never wait behind the public port's connection limit.

It serves the same :class:`~trio_core.storage.mounts.StorageHTTP` application as the public
port through :class:`~trio_core.httpd.asgi.AsgiHandler`: persistent connections, chunked
request bodies pulled with backpressure (the next chunk is read from the socket only when the
app asks for it), streamed responses. Limits: :data:`MAX_CONNECTIONS` concurrent connections
(more are answered 503), :data:`IDLE_TIMEOUT` seconds of keep-alive between requests and
without a byte of a body, request heads up to 16 KiB.

Cancellation: ``serve`` runs until cancelled; every connection is a task in its nursery and
is closed with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from trio_core.httpd.asgi import AsgiHandler
from trio_core.httpd.server import HttpServer, ServerLimits, bind_listeners

__all__ = ["IDLE_TIMEOUT", "MAX_CONNECTIONS", "LoopbackServer"]

MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 30.0

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


class LoopbackServer:
    """Serves ``app`` on ``host`` (loopback), port 0 = ephemeral; ``port`` once running."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.port = 0
        self.server = HttpServer(
            AsgiHandler(app, extensions={"trio_core.loopback": {}}),  # its own auth backoff
            ServerLimits(max_connections=MAX_CONNECTIONS, idle_timeout=IDLE_TIMEOUT,
                         body_timeout=IDLE_TIMEOUT, head_timeout=IDLE_TIMEOUT))

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = bind_listeners(self.host, self.requested_port)
        self.port = listeners[0].getsockname()[1]

        async with trio.open_nursery() as nursery:
            await nursery.start(partial(self.server.serve, listeners))
            task_status.started(self.port)
