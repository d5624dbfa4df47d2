"""The HTTP/1.1 server: a thin trio shell around :class:`~trio_core.httpd.connection.Connection`.

:class:`HttpServer` accepts on its listening sockets and runs **one task per connection** (no
task per request): the task parses requests with the sans-IO connection and awaits
``handler(channel)`` for each, in order (pipelined requests are answered in order; the next
one is parsed only after the previous answer ended). The handler answers through the
:class:`Channel` — :meth:`Channel.respond` (head and body in **one** ``sendmsg`` of the
pieces: no copy of the body), or :meth:`Channel.start` / :meth:`Channel.write` /
:meth:`Channel.end` to stream — and reads the body with :meth:`Channel.read_body` (which
sends ``100 Continue`` first when the client waits for it). :mod:`trio_core.httpd.asgi`
adapts an ASGI application to a handler.

Limits (:class:`ServerLimits`): request head/body sizes (431/414/413 answered by the
connection), at most ``max_connections`` open connections (a connection over the limit is
answered ``503`` with ``Retry-After: 1`` and closed: the limit is global, never per client
address, so a load balancer in front that carries every client's requests is not refused
as one client), ``head_timeout`` seconds for a request head (from the connection's accept or
the first byte of the request: slowloris), ``idle_timeout`` seconds of keep-alive between
requests, ``body_timeout`` without a byte of a request body, ``send_timeout`` without the
client taking any of a response. Keep-alive is never ended by a count of requests.

Graceful stop (:meth:`HttpServer.serve`'s ``shutdown_trigger`` returning): stop accepting,
close the connections waiting for a request at once, let each connection in a request finish
its answer (``Connection: close``) for at most ``graceful_timeout`` seconds, then cancel the
rest; ``serve`` returns when every connection is closed. A connection closed while request
bytes are still unread (an answer before the body, e.g. 413 or 401) first shuts down its
sending side and drains what the client sends for up to :data:`LINGER_SECONDS` (2 s; a "lingering
close", as Go's server does), so the client reads the answer instead of a reset.

Cancellation: cancelling ``serve`` closes the listeners and every connection (their handlers
are cancelled). A handler's exception is logged and answered ``500`` when nothing was sent
yet, else the connection is closed.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from trio_core.httpd.connection import (
    END_OF_MESSAGE,
    NEED_DATA,
    Connection,
    Data,
    HttpError,
    Limits,
    Request,
)

__all__ = ["Channel", "Handler", "HttpServer", "ServerLimits", "bind_listeners"]

log = logging.getLogger(__name__)

READ_SIZE = 65536
PIPELINE_HOLD = 64 * 1024  # pipelined bytes read while a handler runs, at most
LINGER_SECONDS = 2.0  # a closing connection with unread request bytes drains this long, at most
LINGER_BYTES = 1024 * 1024
BACKLOG = 1024
_OVERLOADED_BODY = (b'{"code":503,"message":"Service Unavailable","details":["too many open'
                    b' connections, try again"]}\n')
OVERLOADED = (b"HTTP/1.1 503 Service Unavailable\r\n"
              b"content-type: application/json; charset=UTF-8\r\n"
              b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
              % len(_OVERLOADED_BODY) + _OVERLOADED_BODY)
INTERNAL_ERROR = (500, [(b"content-type", b"application/json; charset=UTF-8")],
                  b'{"code":500,"message":"Internal Server Error","details":["internal error"]}\n')


@dataclass(frozen=True)
class ServerLimits:
    """Every limit of the server (seconds, counts); see the module docstring."""

    connection: Limits = field(default_factory=Limits)
    max_connections: int = 4096
    head_timeout: float = 10.0
    idle_timeout: float = 60.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0
    graceful_timeout: float = 3.0


class ClientGone(Exception):
    """The client closed the connection or stopped taking data in time."""


Handler = Callable[["Channel"], Awaitable[None]]


class Channel:
    """One accepted connection: its socket, sans-IO state and the current request."""

    __slots__ = ("client", "conn", "gone", "request", "scope", "server", "server_addr",
                 "sock", "started", "_finished")

    def __init__(self, server: HttpServer, sock: socket.socket, client: tuple[str, int],
                 server_addr: tuple[str, int]) -> None:
        self.server = server
        self.sock = sock
        self.client = client
        self.server_addr = server_addr
        self.conn = Connection(server.limits.connection)
        self.scope = trio.CancelScope()
        self.request: Request | None = None
        self.started = False  # a response head went out for the current request
        self._finished = False
        self.gone = False  # the client went away (or the socket failed): nothing more is sent

    @property
    def finished(self) -> bool:
        """True when the current request's response ended."""
        return self._finished

    # -- socket I/O ---------------------------------------------------------------------------
    async def _fill(self, deadline: float) -> None:
        """Read once from the socket into the connection, waiting until ``deadline`` at most
        (then the connection's scope is cancelled: the connection ends)."""
        sock = self.sock
        while True:
            try:
                data = sock.recv(READ_SIZE)
            except BlockingIOError:
                self.scope.deadline = deadline
                try:
                    await trio.lowlevel.wait_readable(sock)
                finally:
                    self.scope.deadline = math.inf
                continue
            except OSError:
                data = b""
            self.conn.receive_data(data)
            return

    async def send_pieces(self, pieces: list[Any]) -> None:
        """Write ``pieces`` (bytes-like, in order) with as few ``sendmsg`` calls as the kernel
        allows. Raises ClientGone."""
        if self.gone:
            raise ClientGone()
        sock = self.sock
        while pieces:
            try:
                sent = sock.sendmsg(pieces)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.gone = True
                raise ClientGone() from None
            while sent:
                first = pieces[0]
                size = len(first)
                if sent >= size:
                    sent -= size
                    del pieces[0]
                else:
                    pieces[0] = memoryview(first)[sent:]
                    sent = 0
            if pieces:
                self.scope.deadline = trio.current_time() + self.server.limits.send_timeout
                try:
                    await trio.lowlevel.wait_writable(sock)
                finally:
                    self.scope.deadline = math.inf

    # -- the handler's side -------------------------------------------------------------------
    async def read_body(self) -> tuple[bytes, bool] | None:
        """The next piece of the request body and whether it was the last; ``(b"", False)``
        never; None when the client went away, timed out or sent a malformed body (the
        error is answered when nothing was sent yet)."""
        conn = self.conn
        if conn.body_complete:
            return b"", True
        cont = conn.continue_response()
        if cont:
            try:
                await self.send_pieces([cont])
            except ClientGone:
                return None
        while True:
            try:
                event = conn.next_event()
            except HttpError as exc:
                if not self.started:
                    await self._send_error(exc)
                self.gone = True
                return None
            if isinstance(event, Data):
                return event.data, event.end
            if event is END_OF_MESSAGE:
                return b"", True
            if event is NEED_DATA:
                await self._fill(trio.current_time() + self.server.limits.body_timeout)
                continue
            self.gone = True  # CLOSED: the client went away mid-body
            return None

    async def wait_disconnect(self) -> None:
        """Return when the client closes its side of the connection (or the socket fails);
        what it sends meanwhile (a pipelined next request) is kept for later, and once
        :data:`PIPELINE_HOLD` bytes are held the socket is not watched any more (then this
        waits until cancelled). For a handler that should stop when its client has left
        (the ASGI ``http.disconnect``); cancel it when the answer is done."""
        conn = self.conn
        while conn.buffered < PIPELINE_HOLD:
            data = await self._recv()
            conn.receive_data(data)
            if not data:
                self.gone = True
                return
        await trio.sleep_forever()

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]],
                      body: bytes | memoryview | Sequence[bytes | memoryview] = b"",
                      length: int | None = None) -> None:
        """The whole response in one write: ``body`` is bytes-like or a sequence of pieces
        (``length`` = their total, computed when None). Raises ClientGone."""
        conn = self.conn
        if isinstance(body, (bytes, bytearray, memoryview)):
            parts: Sequence[bytes | memoryview] = (body,) if body else ()
            if length is None:
                length = len(body)
        else:
            parts = body
            if length is None:
                length = sum(len(p) for p in parts)
        head = conn.response_head(status, headers, length, close=self.server.stopping)
        self.started = True
        pieces: list[Any] = [head]
        for part in parts:
            pieces += conn.body_pieces(part)
        pieces += conn.end_pieces()
        self._finished = True
        await self.send_pieces(pieces)

    async def start(self, status: int, headers: list[tuple[bytes, bytes]],
                    length: int | None = None, pieces: Sequence[bytes | memoryview] = ()) -> None:
        """Send the response head (and first ``pieces``) of a streamed response."""
        conn = self.conn
        out: list[Any] = [conn.response_head(status, headers, length,
                                             close=self.server.stopping)]
        self.started = True
        for piece in pieces:
            out += conn.body_pieces(piece)
        await self.send_pieces(out)

    async def write(self, data: bytes | memoryview) -> None:
        """Send more of a streamed body."""
        pieces = self.conn.body_pieces(data)
        if pieces:
            await self.send_pieces(pieces)

    async def end(self, data: bytes | memoryview = b"") -> None:
        """End a streamed response (with a last piece of body)."""
        pieces = self.conn.body_pieces(data) if data else []
        pieces += self.conn.end_pieces()
        self._finished = True
        if pieces:
            await self.send_pieces(pieces)

    async def _send_error(self, error: HttpError) -> None:
        self.started = True
        self._finished = True
        try:
            await self.send_pieces([self.conn.error_response(error)])
        except ClientGone:
            pass

    async def linger(self) -> None:
        """Close our side and read what the client still sends (up to :data:`LINGER_BYTES`)
        until it closes too: closing with unread bytes would reset the connection, and the
        client could lose the answer it has not read yet (an early 413/401). Bounded by the
        caller's timeout."""
        sock = self.sock
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        left = LINGER_BYTES
        while left > 0:
            data = await self._recv()
            if not data:
                return
            left -= len(data)

    async def _recv(self) -> bytes:
        """What the socket has (waiting until it has something); b"" at its end or on an
        error. No deadline of its own: the caller's scope bounds it."""
        sock = self.sock
        while True:
            try:
                return sock.recv(READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
            except OSError:
                return b""

    def close_after_response(self) -> None:
        """End the connection after the current response (e.g. an answer left half-sent)."""
        self.conn.keep_alive = False

    # -- the connection task ------------------------------------------------------------------
    async def run(self, handler: Handler) -> None:
        conn = self.conn
        limits = self.server.limits
        head_deadline = trio.current_time() + limits.head_timeout  # from the accept
        with self.scope:
            while True:
                try:
                    event = conn.next_event()
                except HttpError as exc:
                    await self._send_error(exc)
                    return
                if event is NEED_DATA:
                    if self.server.stopping and conn.idle:
                        return
                    if not conn.buffered and head_deadline == math.inf:
                        deadline = trio.current_time() + limits.idle_timeout
                    else:  # a request head started: it must be complete in time
                        if head_deadline == math.inf:
                            head_deadline = trio.current_time() + limits.head_timeout
                        deadline = head_deadline
                    self.server.idle.add(self)
                    try:
                        await self._fill(deadline)
                    finally:
                        self.server.idle.discard(self)
                    if conn.buffered and head_deadline == math.inf:
                        head_deadline = trio.current_time() + limits.head_timeout
                    continue
                if not isinstance(event, Request):
                    return  # CLOSED (or PAUSED after an unfinished answer: not reusable)
                head_deadline = math.inf
                self.request = event
                self.started = False
                self._finished = False
                try:
                    await handler(self)
                except ClientGone:
                    return
                except Exception:
                    log.exception("HTTP handler failed on %s %r", event.method, event.target)
                    if self.started:
                        return
                    try:
                        await self.respond(*INTERNAL_ERROR)
                    except ClientGone:
                        return
                if self.gone:
                    return
                if not self._finished:
                    if not self.started:
                        try:
                            await self.respond(*INTERNAL_ERROR)
                        except ClientGone:
                            return
                    else:
                        return  # the handler left its answer unfinished: close
                if not conn.keep_alive or self.server.stopping:
                    return
                if conn.buffered:  # pipelined: let other connections run between requests
                    await trio.lowlevel.checkpoint()


def _close_listeners(listeners: list[socket.socket]) -> None:
    for listener in listeners:
        if listener.fileno() != -1:
            trio.lowlevel.notify_closing(listener)
            listener.close()


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host``/``port`` (every address ``host`` resolves to; port 0
    = one ephemeral port, the same for all). Raises OSError."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for family, kind, proto, _name, addr in infos:
            if (family, addr[0]) in seen:
                continue
            seen.add((family, addr[0]))
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and socks:
                    addr = (addr[0], socks[0].getsockname()[1], *addr[2:])
                sock.bind(addr)
            except OSError as exc:
                sock.close()
                if socks and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue
                raise
            sock.listen(BACKLOG)
            sock.setblocking(False)
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


class HttpServer:
    """Serves ``handler`` on listening sockets with ``limits``."""

    def __init__(self, handler: Handler, limits: ServerLimits | None = None) -> None:
        self.handler = handler
        self.limits = limits or ServerLimits()
        self.channels: set[Channel] = set()
        self.idle: set[Channel] = set()  # waiting for (the rest of) a request head
        self.stopping = False
        self.refused = 0  # connections answered 503 (over max_connections)

    async def serve(self, listeners: list[socket.socket], *,
                    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept on ``listeners`` (taken over: closed on return) until ``shutdown_trigger``
        returns (then stop gracefully) or cancellation."""
        try:
            async with trio.open_nursery() as nursery:
                accepting = trio.CancelScope()

                async def accept_all() -> None:
                    with accepting:
                        async with trio.open_nursery() as acceptors:
                            for listener in listeners:
                                acceptors.start_soon(self._accept, listener, nursery)

                nursery.start_soon(accept_all)
                task_status.started()
                if shutdown_trigger is None:
                    await trio.sleep_forever()
                await shutdown_trigger()
                self.stopping = True
                accepting.cancel()
                _close_listeners(listeners)  # new connections are refused from now on
                for channel in list(self.idle):  # waiting for a request: close now
                    channel.scope.cancel()
                nursery.cancel_scope.deadline = (trio.current_time()
                                                 + self.limits.graceful_timeout)
        finally:
            _close_listeners(listeners)

    async def _accept(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        local = listener.getsockname()
        while True:
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(listener)
                except trio.ClosedResourceError:
                    return
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("HTTP accept failed (%s); pausing 0.1 s", exc)
                    await trio.sleep(0.1)
                    continue
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise
            sock.setblocking(False)
            if len(self.channels) >= self.limits.max_connections:
                self.refused += 1
                try:
                    sock.send(OVERLOADED)
                except OSError:
                    pass
                sock.close()
                await trio.lowlevel.checkpoint()
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            channel = Channel(self, sock, (str(addr[0]), int(addr[1])),
                              (str(local[0]), int(local[1])))
            self.channels.add(channel)
            nursery.start_soon(self._connection, channel)
            await trio.lowlevel.checkpoint()

    async def _connection(self, channel: Channel) -> None:
        try:
            await channel.run(self.handler)
            if channel.conn.unread and not channel.gone:
                with trio.move_on_after(LINGER_SECONDS):
                    await channel.linger()
        finally:
            self.channels.discard(channel)
            self.idle.discard(channel)
            sock = channel.sock
            try:
                sock.shutdown(socket.SHUT_WR)  # lets the client read everything we sent
            except OSError:
                pass
            trio.lowlevel.notify_closing(sock)
            sock.close()
