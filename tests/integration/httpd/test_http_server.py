"""trio-core's HTTP/1.1 server over real sockets: keep-alive, pipelining, timeouts, limits,
chunked uploads, 100-continue, HEAD, graceful stop, the connection limit (a small ASGI app;
the whole product runs on the same server in every other integration test)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import h11
import trio

from trio_core.httpd.asgi import AsgiHandler, lifespan
from trio_core.httpd.connection import Limits
from trio_core.httpd.server import HttpServer, ServerLimits, bind_listeners


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/echo`` answers the body it read; ``/slow?s`` sleeps first; else the path."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/slow":
        await trio.sleep(float(scope["query_string"] or b"0.5"))
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):
            await send({"type": "http.response.body", "body": b"x" * 70000, "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": path.encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def serving(limits: ServerLimits | None = None) -> AsyncIterator[tuple[int, HttpServer, trio.Event]]:
    stop = trio.Event()
    listeners = bind_listeners("127.0.0.1", 0)
    port = listeners[0].getsockname()[1]
    server = HttpServer(AsgiHandler(app), limits)
    async with lifespan(app), trio.open_nursery() as nursery:
        await nursery.start(partial(server.serve, listeners, shutdown_trigger=stop.wait))
        try:
            yield port, server, stop
        finally:
            stop.set()


async def read_response(stream: trio.SocketStream, conn: h11.Connection,
                        method: bytes = b"GET") -> tuple[h11.Response, bytes]:
    response = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
            continue
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return response, body
        elif isinstance(event, h11.ConnectionClosed):
            raise AssertionError("closed")


async def raw_exchange(port: int, data: bytes, *, until_close: bool = True) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        out = b""
        with trio.move_on_after(5):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                out += chunk
                if not until_close and b"\r\n\r\n" in out:
                    break
        return out


async def test_keep_alive_past_1000_requests_without_close() -> None:
    async with serving() as (port, _server, _stop):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            for i in range(1100):
                await stream.send_all(conn.send(h11.Request(
                    method="GET", target=f"/n{i}", headers=[("Host", "x")])))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                response, body = await read_response(stream, conn)
                assert response.status_code == 200 and body == f"/n{i}".encode()
                assert (b"connection", b"close") not in response.headers
                assert (b"content-length", str(len(body)).encode()) in response.headers
                conn.start_next_cycle()


async def test_pipelined_requests_answered_in_order() -> None:
    async with serving() as (port, _server, _stop):
        requests = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(20))
        requests += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out = await raw_exchange(port, requests)
        bodies = [part.split(b"\r\n\r\n", 1)[1][:6] for part in out.split(b"HTTP/1.1 ")[1:]]
        assert len(bodies) == 21
        assert [b.rstrip(b"H") for b in bodies[:3]] == [b"/p0", b"/p1", b"/p2"]
        assert out.endswith(b"/last")


async def test_idle_and_slowloris_timeouts_close() -> None:
    limits = ServerLimits(idle_timeout=0.3, head_timeout=0.5)
    async with serving(limits) as (port, _server, _stop):
        # idle keep-alive: closed after idle_timeout
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            with trio.fail_after(3):
                while True:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    got += chunk
            assert got.startswith(b"HTTP/1.1 200 OK")
        # slowloris: a head trickling in is cut at head_timeout though bytes keep coming
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            start = trio.current_time()
            closed = False
            with trio.fail_after(3):
                for c in b"GET /slowloris HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 100:
                    try:
                        await stream.send_all(bytes([c]))
                    except trio.BrokenResourceError:
                        closed = True
                        break
                    with trio.move_on_after(0.05):
                        if await stream.receive_some(100) == b"":
                            closed = True
                            break
            assert closed
            assert 0.4 < trio.current_time() - start < 2.0


async def test_431_413_with_clear_messages() -> None:
    limits = ServerLimits(connection=Limits(max_head=2048, max_body=1000))
    async with serving(limits) as (port, _server, _stop):
        out = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000
                                 + b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        body = json.loads(out.split(b"\r\n\r\n", 1)[1])
        assert body["details"] == ["request head larger than 2048 bytes"]
        out = await raw_exchange(port, b"PUT /echo HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 5000\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 413 ")
        assert b"request body of 5000 bytes larger than 1000 bytes" in out


async def test_chunked_upload_and_streamed_answer() -> None:
    async with serving() as (port, _server, _stop):
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"a" * 1000, b"b" * 7, b"c"))
        out = await raw_exchange(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                       b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        assert b"content-length: 1008" in head
        assert body == b"a" * 1000 + b"b" * 7 + b"c"
        # a body larger than the flush size goes out chunked as it comes
        out = await raw_exchange(port, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/stream", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        conn.receive_data(out)
        data = b""
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                assert (b"transfer-encoding", b"chunked") in event.headers
            if isinstance(event, h11.Data):
                data += event.data
            if isinstance(event, h11.EndOfMessage):
                break
        assert data == b"x" * 210000 + b"end"


async def test_expect_100_continue_only_when_the_app_reads() -> None:
    async with serving() as (port, _server, _stop):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                                  b"Content-Length: 4\r\n\r\n")
            with trio.fail_after(3):
                got = await stream.receive_some(100)
            assert got == b"HTTP/1.1 100 Continue\r\n\r\n"
            await stream.send_all(b"body")
            with trio.fail_after(3):
                got = await stream.receive_some(1000)
            assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"body")
        # an app that answers without reading: no 100, and the connection closes after it
        out = await raw_exchange(port, b"PUT /nobody HTTP/1.1\r\nHost: x\r\n"
                                       b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 OK") and b"100 Continue" not in out
        assert b"connection: close" in out


async def test_head_has_no_body() -> None:
    async with serving() as (port, _server, _stop):
        out = await raw_exchange(port, b"HEAD /headpath HTTP/1.1\r\nHost: x\r\n\r\n"
                                       b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        first, second = out.split(b"HTTP/1.1 ")[1:]
        assert b"content-length: 9" in first and first.endswith(b"\r\n\r\n")
        assert second.endswith(b"/after")


async def test_graceful_stop_finishes_the_request_in_flight() -> None:
    async with serving() as (port, server, stop):
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        await busy.send_all(b"GET /slow?0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.sleep(0.1)
        stop.set()
        with trio.fail_after(3):
            got = b""
            while True:
                chunk = await busy.receive_some(1000)
                if not chunk:
                    break
                got += chunk
            assert got.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in got
            assert await idle.receive_some(100) == b""  # waiting for a request: closed at once
        await busy.aclose()
        await idle.aclose()
        with trio.fail_after(3):
            while server.channels:
                await trio.sleep(0.01)
        try:
            refused = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            pass
        else:
            await refused.aclose()
            raise AssertionError("still accepting after the stop")


async def test_connection_limit_answers_503() -> None:
    async with serving(ServerLimits(max_connections=2)) as (port, server, _stop):
        held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
        await trio.sleep(0.1)
        out = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in out
        assert b"too many open connections" in out
        assert server.refused == 1
        for stream in held:
            await stream.aclose()
        with trio.fail_after(3):
            while len(server.channels) > 0:
                await trio.sleep(0.01)
        out = await raw_exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 OK")


def test_bind_listeners_ephemeral_port() -> None:
    socks = bind_listeners("127.0.0.1", 0)
    try:
        assert socks[0].getsockname()[1] > 0
        assert socks[0].type == socket.SOCK_STREAM
    finally:
        for sock in socks:
            sock.close()


async def test_early_answer_then_lingering_close() -> None:
    """A 413 answered at the head while the client sends its body right behind it: the
    server shuts down its sending side and drains the body (a lingering close, as Go), so
    the client sends it without a reset and reads the answer and then a clean end."""
    limits = ServerLimits(connection=Limits(max_body=1000))
    async with serving(limits) as (port, _server, _stop):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            body = b"x" * 200_000
            await stream.send_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: %d\r\n\r\n" % len(body))
            got = b""
            with trio.fail_after(5):
                await stream.send_all(body)  # no reset: the server reads it
                while chunk := await stream.receive_some(65536):
                    got += chunk
            assert got.startswith(b"HTTP/1.1 413 ") and b"connection: close" in got
