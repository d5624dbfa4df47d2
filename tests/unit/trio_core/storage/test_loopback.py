"""trio_core.storage.loopback: a minimal HTTP/1.1 server for an ASGI app on 127.0.0.1 (what
FFmpeg writes ``{memfs}`` to): requests reach the app, answers reach the client, keep-alive."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import trio

from trio_core.storage.loopback import LoopbackServer


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = f"{scope['method']} {scope['path']} {len(body)}".encode()
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": answer})


async def test_requests_reach_the_app_over_one_connection() -> None:
    server = LoopbackServer(echo_app)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        assert port == server.port > 0

        def two_requests() -> list[httpx.Response]:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                return [client.put("/memfs/a.ts", content=b"x" * 70000),
                        client.get("/memfs/b.m3u8")]

        put, get = await trio.to_thread.run_sync(partial(two_requests))
        nursery.cancel_scope.cancel()
    assert (put.status_code, put.text) == (201, "PUT /memfs/a.ts 70000")
    assert (get.status_code, get.text) == (201, "GET /memfs/b.m3u8 0")
    assert put.headers["content-type"] == "text/plain"
