"""ASGI 3 over :mod:`trio_core.httpd.server`: an ASGI application as a server handler.

:class:`AsgiHandler` builds the ``http`` scope from the request (``path`` percent-decoded,
``raw_path``, ``query_string``, lower-case ``headers``, ``client``/``server`` addresses,
``extensions`` as given) and runs the app in the connection's task. ``receive`` returns the
body piece by piece as the app asks for it (the next piece is read from the socket only then:
backpressure; ``100 Continue`` goes out on the first ``receive`` of a body the client holds
back); once the body ended it waits until the request is over (the app cancels its watcher
once it answered) or the client closes the connection (the app cancels a handler whose
client left, as under any ASGI server: :mod:`trio_core.web.app`), and after the response it
returns ``http.disconnect``. ``send`` collects
the response: head and body pieces are written in **one** ``sendmsg`` when the app finishes
within :data:`FLUSH_BYTES` (a missing ``Content-Length`` is then filled in); larger or
streamed bodies go out as they come (chunked when no length was given). What the app sends
after the client went away is dropped (the app is not failed by it; the connection closes
after the request). ``HEAD`` bodies are dropped by the connection.

:func:`lifespan` runs the ASGI ``lifespan`` protocol (startup before serving, shutdown after)
for apps that use it (trio_core.web's app acknowledges both; an app without it is served
all the same).

Cancellation: the app runs inside the connection's scope; a timeout or a forced stop cancels
it like any trio code.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import trio

from trio_core.httpd.server import Channel, ClientGone

__all__ = ["FLUSH_BYTES", "AsgiHandler", "lifespan"]

log = logging.getLogger(__name__)

FLUSH_BYTES = 64 * 1024
Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]
_DISCONNECT: Message = {"type": "http.disconnect"}
_ASGI = {"version": "3.0", "spec_version": "2.3"}


class _Exchange:
    """``receive``/``send`` of one request."""

    __slots__ = ("channel", "status", "headers", "pending", "pending_size", "body_done",
                 "head_sent", "dropped")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.pending: list[bytes | memoryview] = []
        self.pending_size = 0
        self.body_done = False
        self.head_sent = False
        self.dropped = False  # the client went away: what the app sends is dropped

    async def receive(self) -> Message:
        channel = self.channel
        if self.body_done:
            if not (channel.finished or channel.gone):
                await channel.wait_disconnect()  # the app cancels this once it answered
            return _DISCONNECT
        piece = await channel.read_body()
        if piece is None:
            self.body_done = True
            return _DISCONNECT
        data, end = piece
        if end:
            self.body_done = True
        return {"type": "http.request", "body": data, "more_body": not end}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            return
        if kind != "http.response.body" or self.dropped or self.channel.finished:
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        try:
            if not self.head_sent:
                if not more:
                    if self.pending:
                        if body:
                            self.pending.append(body)
                        await self.channel.respond(self.status, self.headers, self.pending)
                    else:
                        await self.channel.respond(self.status, self.headers, body)
                    return
                if body:
                    self.pending.append(body)
                    self.pending_size += len(body)
                if self.pending_size < FLUSH_BYTES:
                    return
                self.head_sent = True
                pieces, self.pending = self.pending, []
                await self.channel.start(self.status, self.headers, None, pieces)
                return
            if more:
                if body:
                    await self.channel.write(body)
            else:
                await self.channel.end(body)
        except ClientGone:
            self.dropped = True


class AsgiHandler:
    """A server handler running ``app``; ``extensions`` go into every scope."""

    def __init__(self, app: ASGIApp, extensions: dict[str, Any] | None = None) -> None:
        self.app = app
        self.scope_extensions = extensions or {}

    async def __call__(self, channel: Channel) -> None:
        request = channel.request
        assert request is not None
        target = request.target
        raw_path, _, query = target.partition(b"?")
        scope: Scope = {
            "type": "http", "asgi": _ASGI, "http_version": request.http_version,
            "method": request.method, "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
            "query_string": query, "root_path": "", "headers": request.headers,
            "client": channel.client, "server": channel.server_addr,
            "extensions": dict(self.scope_extensions),
        }
        exchange = _Exchange(channel)
        await self.app(scope, exchange.receive, exchange.send)
        if exchange.dropped:
            channel.gone = True
        elif exchange.head_sent and not channel.finished:
            channel.close_after_response()  # the app ended its answer early


@asynccontextmanager
async def lifespan(app: ASGIApp, *, timeout: float = 10.0) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan around the block: startup before it (raises RuntimeError
    when the app reports a failed startup), shutdown after it (bounded by ``timeout``). An
    app that does not speak lifespan (raises at once) is served without."""
    to_app_send, to_app_receive = trio.open_memory_channel[Message](2)
    from_app_send, from_app_receive = trio.open_memory_channel[Message](2)
    supported = True

    async def run_app() -> None:
        nonlocal supported
        try:
            await app({"type": "lifespan", "asgi": _ASGI, "state": {}},
                      to_app_receive.receive, from_app_send.send)
        except Exception:
            supported = False
            log.debug("ASGI app has no lifespan support", exc_info=True)
        finally:
            from_app_send.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_app)
        await to_app_send.send({"type": "lifespan.startup"})
        try:
            reply = await from_app_receive.receive()
        except trio.EndOfChannel:
            reply = {"type": "lifespan.startup.complete"} if not supported else {
                "type": "lifespan.startup.failed", "message": "app ended"}
        if reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"ASGI startup failed: {reply.get('message', '')}")
        try:
            yield
        finally:
            with trio.CancelScope(shield=True) as shutdown:
                shutdown.deadline = trio.current_time() + timeout if timeout else math.inf
                if supported:
                    try:
                        await to_app_send.send({"type": "lifespan.shutdown"})
                        await from_app_receive.receive()
                    except (trio.EndOfChannel, trio.BrokenResourceError):
                        pass
            nursery.cancel_scope.cancel()
