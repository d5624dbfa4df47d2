"""The HTTP API client and server fixtures shared by the integration tests: a server on
127.0.0.1 with test settings (``make_config`` + ``running_server``), a small httpx-in-a-thread
client (``Api``), a cheap lavfi process config and polling/assert helpers.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from trio_core.config.settings import Config, load_config
from trio_core.server import Running, serve


# ---------------------------------------------------------------------------------- helpers
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_config(tmp_path: Path, ffmpeg: str, **overrides: Any) -> Config:
    """Test settings: ephemeral port, tmp dirs, no demo, no WebRTC, the test FFmpeg."""
    values: dict[str, Any] = {
        "api.address": "127.0.0.1:0",
        "db.dir": str(tmp_path / "db"),
        "storage.disk.dir": str(tmp_path / "data"),
        "ffmpeg.binary": ffmpeg,
        "demo.enable": False,
        "webrtc.enable": False,
        "log.level": "info",
    }
    values.update(overrides)
    return load_config(None, env={}).replace(**values)


@asynccontextmanager
async def running_server(config: Config) -> AsyncIterator[Running]:
    """Run ``serve(config)`` in a nursery; shut it down gracefully on exit."""
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(partial(serve, config))
        try:
            yield running
        finally:
            running.shutdown()


class Api:
    """A tiny synchronous-httpx-in-a-thread client for one server."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.token = token

    async def request(
        self, method: str, path: str, *, json_body: Any = None, content: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        hdrs = dict(headers or {})
        if self.token:
            hdrs.setdefault("Authorization", f"Bearer {self.token}")
        kwargs: dict[str, Any] = {"headers": hdrs, "timeout": 20.0}
        if json_body is not None:
            kwargs["json"] = json_body
        if content is not None:
            kwargs["content"] = content
        call: Callable[[], httpx.Response] = partial(httpx.request, method, self.base + path, **kwargs)
        return await trio.to_thread.run_sync(call)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, json_body=body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, json_body=body, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kw)


def tiny_process(process_id: str, **extra: Any) -> dict[str, Any]:
    """A cheap process: lavfi test pattern + sine into the null muxer."""
    cfg: dict[str, Any] = {
        "id": process_id,
        "reference": "tests",
        "options": ["-loglevel", "level+info", "-filter_threads", "1"],
        "input": [
            {"id": "video", "address": "testsrc=size=160x120:rate=10", "options": ["-re", "-f", "lavfi"]},
            {"id": "audio", "address": "sine=frequency=440:sample_rate=8000", "options": ["-re", "-f", "lavfi"]},
        ],
        "output": [
            {"id": "null", "address": "-", "options": ["-map", "0:v", "-map", "1:a", "-threads", "1", "-f", "null"]},
        ],
        "reconnect": False,
        "autostart": True,
    }
    cfg.update(extra)
    return cfg


def assert_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    """The response is a datarhei error body with ``status``."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"code", "message", "details"}, body
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    return body


async def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, step: float = 0.2) -> Any:
    """Poll an async predicate until it returns something truthy (fails after ``timeout``)."""
    with trio.fail_after(timeout):
        while True:
            result = await predicate()
            if result:
                return result
            await trio.sleep(step)
