"""The loopback HTTP/1.1 endpoint that ``{memfs}`` points FFmpeg at.

Why a second listener: FFmpeg writes to memfs with ``-method PUT`` and credentials in the URL,
but it only sends ``Authorization`` after a 401 challenge, and it asks for that challenge with
``Expect: 100-continue`` before sending the body. Go's server (datarhei Core) answers 401
right away; hypercorn always sends ``100 Continue`` before the application has seen the
request, so FFmpeg would send every segment unauthenticated and lose it. This endpoint sends
``100 Continue`` only when the application starts reading the body — after the Basic-auth
check passed — exactly like Core's server, so FFmpeg retries with its credentials.

It is a minimal ASGI server over h11 (sans-IO HTTP/1.1) that runs the same
:class:`~trio_core.storage.mounts.StorageHTTP` application as the public port, on
``127.0.0.1`` with an ephemeral port: persistent connections, chunked request bodies pulled
with backpressure (the next chunk is read from the socket only when the app asks for it),
streamed responses. Limits: :data:`MAX_CONNECTIONS` concurrent connections (more wait in the
accept queue), :data:`IDLE_TIMEOUT` seconds without a byte from the client closes the
connection, request heads up to 16 KiB.

Cancellation: ``serve`` runs until cancelled; every connection is a task in its nursery and
is closed with it.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import trio

__all__ = ["IDLE_TIMEOUT", "MAX_CONNECTIONS", "LoopbackServer"]

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 30.0
READ_SIZE = 65536

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


class _Exchange:
    """One request/response on a connection, as ASGI ``receive``/``send``."""

    def __init__(self, conn: h11.Connection, stream: trio.SocketStream) -> None:
        self.conn = conn
        self.stream = stream
        self.body_done = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = False
        self.finished = False

    async def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                with trio.move_on_after(IDLE_TIMEOUT):
                    data = await self.stream.receive_some(READ_SIZE)
                    self.conn.receive_data(data)
                    continue
                raise trio.BrokenResourceError("client idle")
            return event

    async def receive(self) -> dict[str, Any]:
        if self.body_done:
            await trio.sleep_forever()  # nothing more comes; the app does not wait on this
        if self.conn.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        try:
            event = await self._next_event()
        except (trio.BrokenResourceError, h11.RemoteProtocolError):
            self.body_done = True
            return {"type": "http.disconnect"}
        if isinstance(event, h11.Data):
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        self.body_done = True
        if isinstance(event, h11.EndOfMessage):
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            return
        if message["type"] != "http.response.body" or self.finished:
            return
        if not self.started:
            self.started = True
            if self.conn.their_state is not h11.DONE:
                # answered before the request was read to its end (a 401 challenge): the
                # connection closes after this answer, so say so (a keep-alive client would
                # otherwise send its next request into the closing socket)
                self.headers.append((b"connection", b"close"))
            await self._send(h11.Response(status_code=self.status, headers=self.headers))
        body = message.get("body", b"")
        if body:
            await self._send(h11.Data(data=bytes(body)))
        if not message.get("more_body", False):
            self.finished = True
            await self._send(h11.EndOfMessage())

    async def _send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            await self.stream.send_all(data)


class LoopbackServer:
    """Serves ``app`` on ``host`` (loopback), port 0 = ephemeral; ``port`` once running."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.port = 0
        self._limit = trio.Semaphore(MAX_CONNECTIONS)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.requested_port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            try:
                task_status.started(self.port)
                while True:
                    await self._limit.acquire()
                    try:
                        stream = await listeners[0].accept()
                    except BaseException:
                        self._limit.release()
                        raise
                    nursery.start_soon(self._connection, stream)
            finally:
                for listener in listeners:
                    await trio.aclose_forcefully(listener)

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            async with stream:
                await self._handle(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            self._limit.release()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        peer = stream.socket.getpeername()
        while True:
            exchange = _Exchange(conn, stream)
            try:
                event = await exchange._next_event()
            except h11.RemoteProtocolError as exc:
                await self._bad_request(conn, stream, exc.error_status_hint)
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed (keep-alive ended) or garbage
            target = event.target.decode("latin-1")
            raw_path, _, query = target.partition("?")
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": event.method.decode("ascii"), "scheme": "http",
                "path": urllib.parse.unquote(raw_path), "raw_path": raw_path.encode("latin-1"),
                "query_string": query.encode("latin-1"), "root_path": "",
                "headers": [(k.lower(), v) for k, v in event.headers],
                "server": (self.host, self.port), "client": tuple(peer[:2]),
                "extensions": {"trio_core.loopback": {}},  # its own memfs auth backoff
            }
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the client went away (FFmpeg does not wait for every response)
            except Exception:
                log.exception("loopback memfs endpoint: error in %s %s", scope["method"], target)
                if not exchange.started:
                    await exchange.send({"type": "http.response.start", "status": 500,
                                         "headers": [(b"content-length", b"0")]})
                    await exchange.send({"type": "http.response.body", "body": b""})
                return
            if not exchange.finished:
                return
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
            else:
                return  # body left unread (e.g. 401) or the client asked to close

    @staticmethod
    async def _bad_request(conn: h11.Connection, stream: trio.SocketStream, status: int) -> None:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                data = conn.send(h11.Response(status_code=status, headers=[
                    (b"content-length", b"0"), (b"connection", b"close")]))
                data += conn.send(h11.EndOfMessage())
                await stream.send_all(data)
            except h11.LocalProtocolError:
                pass
