"""The SRT subsystem: the SRT server, ``GET /api/v3/srt`` and the ``{srt}`` placeholder.

Loaded by :mod:`trio_core.server` when ``srt.enable`` is true (settings ``srt.address``,
``srt.passphrase``, ``srt.token``). ``install`` loads libsrt; when it is missing the error is
logged and the subsystem stays disabled (no route, no placeholder, the rest of the server
runs). ``run`` binds the listener, sets ``supervisor.placeholders["srt"]`` to Core's template
for the bound port and serves until cancelled (the server starts it before the supervisor
and cancels it after every process has stopped). A bind failure (port taken, bad
passphrase) is logged and disables the subsystem too, as Core logs an SRT server error and
carries on. Connections are accounted in the observability subsystem's ``srt`` session
collector (:mod:`.sessions`, a task of ``run``).

``{srt,name=X[,latency=µs]}`` resolves as Core's ``app/api/api.go`` template:
``srt://HOST:PORT?mode=caller&transtype=live&latency={latency}&streamid={name},mode:request``
in inputs (``mode:publish`` in outputs), ``,token:T`` when ``srt.token`` is set,
``&passphrase=P`` when ``srt.passphrase`` is set; latency defaults to 20000 µs (FFmpeg's
unit). HOST is the configured host; for an empty/wildcard host it is ``127.0.0.1``
(``[::1]`` for ``::``) rather than Core's ``localhost``, which FFmpeg may resolve to ``::1``
while the listener is IPv4 only.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import trio

from ..config import Config
from ..observability.subsystem import session_collector
from ..placeholders import Template
from .binding import SrtError, SrtUnavailable, load
from .hub import Hub
from .routes import srt_blueprint
from .server import SrtServer
from .sessions import SrtSessions

__all__ = ["SrtSubsystem", "create_subsystem", "placeholder_template"]

log = logging.getLogger(__name__)

DEFAULT_LATENCY_US = "20000"
#: where the server's own FFmpeg processes connect from: never bounded per address
OWN_ADDRESSES = frozenset({"127.0.0.1", "::1"})


def placeholder_template(host: str, port: int, *, token: str = "", passphrase: str = "") -> Template:
    """Core's ``{srt}`` template for a listener on ``host:port`` (see module docstring)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    base = f"srt://{host}:{port}?mode=caller&transtype=live&latency={{latency}}&streamid={{name}}"
    suffix = f",token:{token}" if token else ""
    query = f"&passphrase={urllib.parse.quote(passphrase, safe='')}" if passphrase else ""
    return Template(
        base + ",mode:request" + suffix + query,
        base + ",mode:publish" + suffix + query,
        defaults={"latency": DEFAULT_LATENCY_US},
    )


class SrtSubsystem:
    """SRT ingest/egress beside the supervisor (see module docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server: SrtServer | None = None
        self._supervisor: Any = None
        self.error: str | None = None
        self.sessions: SrtSessions | None = None

    def install(self, ctx: Any) -> None:
        try:
            lib = load()
        except SrtUnavailable as exc:
            self.error = str(exc)
            log.error("SRT server disabled: %s", exc)
            return
        try:
            self.server = SrtServer(
                address=self.config["srt.address"],
                passphrase=self.config["srt.passphrase"],
                token=self.config["srt.token"],
                hub=Hub(max_queue_bytes=self.config["relay.srt_queue_max_bytes"],
                        max_backlog_ms=self.config["relay.srt_max_backlog_ms"],
                        max_per_address=self.config["srt.max_connections_per_address"],
                        unlimited_addresses=OWN_ADDRESSES),
                lib=lib,
            )
        except ValueError as exc:
            self.error = f"srt.address/srt.passphrase: {exc}"
            log.error("SRT server disabled: %s", self.error)
            return
        self._supervisor = ctx.supervisor
        app = ctx.app
        # looked up per sync: observability installs after this subsystem
        self.sessions = SrtSessions(self.server, lambda: session_collector(app, "srt"))
        ctx.app.register_blueprint(srt_blueprint(self.server))
        ctx.app.extensions["trio_core_srt"] = self

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        server = self.server
        if server is None:
            task_status.started(self)
            return
        try:
            async with trio.open_nursery() as nursery:
                try:
                    port = await nursery.start(server.run)
                except (SrtError, ValueError) as exc:
                    self.error = f"cannot listen on {self.config['srt.address']}: {exc}"
                    log.error("SRT server disabled: %s", self.error)
                    task_status.started(self)
                    return
                self._supervisor.placeholders["srt"] = placeholder_template(
                    server.host, port, token=server.token, passphrase=server.passphrase
                )
                log.info("SRT server listening on %s:%d (libsrt %s)", server.host or "0.0.0.0",
                         port, server.lib.version)
                if self.sessions is not None:
                    nursery.start_soon(self.sessions.run)
                task_status.started(self)
        except Exception as exc:  # after start: keep the rest of the server running
            self.error = f"SRT server failed: {exc!r}"
            log.exception("SRT server failed; SRT is unavailable until restart")
        finally:
            if self._supervisor is not None:
                self._supervisor.placeholders.pop("srt", None)


def create_subsystem(config: Config) -> SrtSubsystem:
    """Entry point used by :func:`trio_core.server.default_subsystems`."""
    return SrtSubsystem(config)
