"""The storage subsystem: memfs + disk, their HTTP mounts, ``/api/v3/fs``, placeholders and
the cleanup rules, plugged into the server through the Subsystem seam (always on).

``install(ctx)``: wraps the app's ASGI entry with :class:`~.mounts.StorageHTTP`, registers
the listing routes, the HLS player (``/hls/<id>``, :mod:`.pages`) and ``/dashboard`` (the
server's own ``/`` page, reachable even when the data dir has an ``index.html``), adds the
:class:`~.cleanup.Cleaner` as a supervisor hook and sets the ``diskfs`` placeholder.

``run`` starts the loopback memfs endpoint (:mod:`.loopback`: the same mounts, served with
Core's ``Expect: 100-continue`` behaviour that FFmpeg's authenticated PUTs need), sets
``{memfs}`` to ``http://[user:pass@]127.0.0.1:<its port>/memfs`` — before the supervisor
starts any process — and runs the cleaner until cancelled (the server cancels subsystems
after the supervisor has stopped every process); on cancel the ``purge_on_delete`` files are
removed, as Core does at shutdown.
"""

from __future__ import annotations

import logging
import os
import secrets
import urllib.parse
from typing import Any

import trio
from quart import Response, current_app

from ..api.login_throttle import LoginThrottle
from ..config import Config
from .cleanup import Cleaner
from .disk import DiskFS
from .loopback import LoopbackServer
from .memfs import MemFS
from .mounts import StorageHTTP
from .openapi import document_storage_routes
from .pages import install_hls_pages
from .routes import fs_blueprint

__all__ = ["StorageSubsystem", "create_subsystem", "memfs_url"]

log = logging.getLogger(__name__)


def memfs_url(host: str, port: int, credentials: tuple[str, str] | None) -> str:
    """``http://[user:pass@]host:port/memfs`` (wildcard hosts -> loopback, IPv6 bracketed)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    userinfo = ""
    if credentials is not None:
        user, password = (urllib.parse.quote(c, safe="") for c in credentials)
        userinfo = f"{user}:{password}@"
    return f"http://{userinfo}{host}:{port}/memfs"


class StorageSubsystem:
    """Owns the storages; see the module docstring."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.memfs = MemFS(max_size=config["storage.memory.max_size_mbytes"] * 1024 * 1024,
                           purge=config["storage.memory.purge"])
        self.disk = DiskFS(os.path.abspath(config["storage.disk.dir"]))
        self.credentials: tuple[str, str] | None = None
        if config["storage.memory.auth.enable"]:
            password = config["storage.memory.auth.password"] or secrets.token_urlsafe(18)
            self.credentials = (config["storage.memory.auth.username"], password)
        self.cleaner: Cleaner | None = None
        self.supervisor: Any = None
        self.http: StorageHTTP | None = None
        self.loopback: LoopbackServer | None = None

    def install(self, ctx: Any) -> None:
        app = ctx.app
        auth = ctx.auth
        self.supervisor = ctx.supervisor
        self.cleaner = Cleaner({"mem": self.memfs, "disk": self.disk}, ctx.supervisor)
        ctx.supervisor.add_hook(self.cleaner)
        ctx.supervisor.placeholders["diskfs"] = self.disk.root
        app.register_blueprint(fs_blueprint(self.memfs, self.disk))
        install_hls_pages(app)

        @app.get("/dashboard")
        async def dashboard() -> Any:
            for rule in current_app.url_map.iter_rules():
                if rule.rule == "/" and "GET" in (rule.methods or ()):
                    return await current_app.ensure_async(current_app.view_functions[rule.endpoint])()
            return Response("no dashboard", status=404)

        token_ok = None
        if getattr(auth, "enabled", False):
            token_ok = lambda token: auth.verify(token, "access") is not None  # noqa: E731
        self.http = app.asgi_app = StorageHTTP(
            app.asgi_app, memfs=self.memfs, disk=self.disk,
            memfs_credentials=self.credentials,
            cors_origins=self.config["storage.cors.origins"], api_token_ok=token_ok,
            routes=lambda: app.url_map,
            throttle=LoginThrottle(delay=self.config["api.auth.login_backoff_ms"] / 1000,
                                   max_delay=self.config["api.auth.login_backoff_max_ms"] / 1000),
        )
        app.extensions["trio_core_storage"] = self
        document_storage_routes(app)

    async def _memfs_only(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The loopback endpoint's app: /memfs only (and lifespan/other paths refused)."""
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/memfs" or path.startswith("/memfs/")):
            assert self.http is not None
            await self.http(scope, receive, send)
            return
        if scope["type"] == "http":
            body = b'{"code":404,"message":"Not Found","details":["only /memfs here"]}'
            await send({"type": "http.response.start", "status": 404, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        assert self.cleaner is not None and self.http is not None, "install() first"
        self.loopback = LoopbackServer(self._memfs_only)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(self.loopback.serve)
            if self.supervisor is not None:
                self.supervisor.placeholders["memfs"] = memfs_url("127.0.0.1", port,
                                                                  self.credentials)
            log.info("storage: {memfs} = %s (writes %s); disk %s at /",
                     memfs_url("127.0.0.1", port, None),
                     "need Basic auth" if self.credentials else "open", self.disk.root)
            await nursery.start(self.cleaner.run)
            task_status.started(self)


def create_subsystem(config: Config) -> StorageSubsystem:
    """Entry point used by :func:`trio_core.server.default_subsystems`."""
    return StorageSubsystem(config)
