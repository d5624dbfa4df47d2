"""The storage subsystem: ``/api/v3/fs``, the HLS player, ``/dashboard``, the cleanup rules,
the loopback memfs endpoint and the ``{diskfs}``/``{memfs}`` placeholders (always on).

The composition root (:mod:`trio_core.server`) builds the storages (:func:`storages`) and the
ASGI layer that mounts them (:class:`~.mounts.StorageHTTP`, wrapped around the app there) and
hands them to :class:`StorageSubsystem`, whose constructor registers the listing routes, the
HLS player (``/hls/<id>``, :mod:`.pages`) and ``/dashboard`` (the server's own ``/`` page,
reachable even when the data dir has an ``index.html``) and adds the
:class:`~.cleanup.Cleaner` as a supervisor hook.

``run`` starts the loopback memfs endpoint (:mod:`.loopback`: the same mounts, served with
Core's ``Expect: 100-continue`` behaviour that FFmpeg's authenticated PUTs need) and, while it
runs, provides ``{diskfs}`` (the disk root) and ``{memfs}``
(``http://[user:pass@]127.0.0.1:<its port>/memfs``) — the server starts it before the
supervisor starts any process — and runs the cleaner until cancelled (the server cancels
subsystems after the supervisor has stopped every process); on cancel the ``purge_on_delete``
files are removed, as Core does at shutdown, and both placeholders are withdrawn.
"""

from __future__ import annotations

import logging
import os
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from trio_core.config.settings import Config
from trio_core.engine.placeholders import Placeholders
from trio_core.http.go_json import JSON_CONTENT_TYPE_BYTES
from trio_core.storage.cleanup import Cleaner
from trio_core.storage.disk import DiskFS
from trio_core.storage.loopback import LoopbackServer
from trio_core.storage.memfs import MemFS
from trio_core.storage.mounts import StorageHTTP
from trio_core.storage.pages import install_hls_pages
from trio_core.storage.routes import fs_blueprint
from trio_core.util.addresses import loopback_for, url_host
from trio_core.web import App, Response, current_app

if TYPE_CHECKING:
    from trio_core.engine.supervisor import Supervisor

__all__ = ["Storages", "StorageSubsystem", "memfs_url", "storages"]

log = logging.getLogger(__name__)


def memfs_url(host: str, port: int, credentials: tuple[str, str] | None) -> str:
    """``http://[user:pass@]host:port/memfs`` (wildcard hosts -> loopback, IPv6 bracketed)."""
    userinfo = ""
    if credentials is not None:
        user, password = (urllib.parse.quote(c, safe="") for c in credentials)
        userinfo = f"{user}:{password}@"
    return f"http://{userinfo}{url_host(loopback_for(host))}:{port}/memfs"


@dataclass
class Storages:
    """memfs, the disk and memfs's write credentials (None: writes need no auth)."""

    memfs: MemFS
    disk: DiskFS
    credentials: tuple[str, str] | None


def storages(config: Config) -> Storages:
    """The storages of ``config`` (``storage.*``)."""
    credentials: tuple[str, str] | None = None
    if config["storage.memory.auth.enable"]:
        password = config["storage.memory.auth.password"] or secrets.token_urlsafe(18)
        credentials = (config["storage.memory.auth.username"], password)
    return Storages(
        memfs=MemFS(max_size=config["storage.memory.max_size_mbytes"] * 1024 * 1024,
                    purge=config["storage.memory.purge"]),
        disk=DiskFS(os.path.abspath(config["storage.disk.dir"])),
        credentials=credentials,
    )


class StorageSubsystem:
    """Owns the storages; see the module docstring."""

    def __init__(self, stores: Storages, http: StorageHTTP, *, app: App,
                 supervisor: Supervisor, placeholders: Placeholders) -> None:
        self.memfs = stores.memfs
        self.disk = stores.disk
        self.credentials = stores.credentials
        self.http = http
        self.placeholders = placeholders
        self.loopback: LoopbackServer | None = None
        self.cleaner = Cleaner({"mem": self.memfs, "disk": self.disk}, supervisor)
        supervisor.add_hook(self.cleaner)
        app.register_blueprint(fs_blueprint(self.memfs, self.disk, http))
        install_hls_pages(app)

        @app.get("/dashboard")
        async def dashboard() -> Any:
            for rule in current_app.url_map.iter_rules():
                if rule.rule == "/" and "GET" in (rule.methods or ()):
                    return await current_app.ensure_async(current_app.view_functions[rule.endpoint])()
            return Response("no dashboard", status=404)

    async def _memfs_only(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The loopback endpoint's app: /memfs only (and lifespan/other paths refused)."""
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/memfs" or path.startswith("/memfs/")):
            await self.http(scope, receive, send)
            return
        if scope["type"] == "http":
            body = b'{"code":404,"message":"Not Found","details":["only /memfs here"]}\n'
            await send({"type": "http.response.start", "status": 404, "headers": [
                (b"content-type", JSON_CONTENT_TYPE_BYTES),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.loopback = LoopbackServer(self._memfs_only)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(self.loopback.serve)
            with (self.placeholders.provide("diskfs", self.disk.root),
                  self.placeholders.provide("memfs", memfs_url("127.0.0.1", port,
                                                               self.credentials))):
                log.info("storage: {memfs} = %s (writes %s); disk %s at /",
                         memfs_url("127.0.0.1", port, None),
                         "need Basic auth" if self.credentials else "open", self.disk.root)
                async with trio.open_nursery() as cleaning:  # ends (purged) before the with
                    await cleaning.start(self.cleaner.run)
                    task_status.started(self)
