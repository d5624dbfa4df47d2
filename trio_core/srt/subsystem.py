"""The SRT subsystem: the SRT server, ``GET /api/v3/srt`` and the ``{srt}`` placeholder.

Constructed by the composition root (:mod:`trio_core.server`) when ``srt.enable`` is true
(settings ``srt.address``, ``srt.passphrase``, ``srt.token``) with the app, the placeholders
and the ``srt`` session collector. The constructor loads libsrt; when it is missing the error
is logged and the subsystem stays disabled (no route, no placeholder, the rest of the server
runs) while ``GET /api/v3/srt`` answers 503 naming the missing library and ``GET /api``
lists the problem under ``implementation.warnings``. ``run`` binds the listener, provides ``{srt}`` (Core's template for the bound port)
while it serves and serves until cancelled (the server starts it before the supervisor and
cancels it after every process has stopped). A bind failure (port taken, bad passphrase) is
logged and disables the subsystem too, as Core logs an SRT server error and carries on. A
failure after that ends ``run`` with the error: the server restarts it with backoff.
Connections are accounted in the ``srt`` session collector (:mod:`.sessions`, a task of
``run``).

``{srt,name=X[,latency=µs]}`` resolves as Core's ``app/api/api.go`` template:
``srt://HOST:PORT?mode=caller&transtype=live&latency={latency}&streamid={name},mode:request``
in inputs (``mode:publish`` in outputs), ``,token:T`` when ``srt.token`` is set,
``&passphrase=P`` when ``srt.passphrase`` is set (spelled by :func:`passphrase_query_value`
so that FFmpeg 5.1 and later read the same passphrase); latency defaults to 20000 µs (FFmpeg's
unit). HOST is the configured host; for an empty/wildcard host it is ``127.0.0.1``
(``[::1]`` for ``::``, :func:`trio_core.util.addresses.loopback_for`) rather than Core's
``localhost``, which FFmpeg may resolve to ``::1`` while the listener is IPv4 only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import trio

from trio_core.config.settings import Config
from trio_core.engine.placeholders import Placeholders, Template
from trio_core.observability.sessions import Collector
from trio_core.srt.binding import SrtError, SrtUnavailable, load
from trio_core.srt.hub import Hub
from trio_core.srt.routes import srt_blueprint, srt_unavailable_blueprint
from trio_core.srt.server import SrtServer
from trio_core.srt.sessions import SrtSessions
from trio_core.util.addresses import loopback_for, url_host
from trio_core.web import App

__all__ = ["SrtSubsystem", "passphrase_query_value", "placeholder_template"]

log = logging.getLogger(__name__)

DEFAULT_LATENCY_US = "20000"
#: where the server's own FFmpeg processes connect from: never bounded per address
OWN_ADDRESSES = frozenset({"127.0.0.1", "::1"})


_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def passphrase_query_value(passphrase: str) -> str:
    """``passphrase`` as the value of FFmpeg's ``srt://…&passphrase=`` that every FFmpeg reads
    back the same.

    FFmpeg's query parser (``av_find_info_tag``) turns ``+`` into a space and ends the value at
    ``&``; FFmpeg up to at least 5.1 does nothing else, newer ones (9) also decode ``%XX``. So
    a space is written ``+`` (read as a space by both; ``%20`` reached FFmpeg 5.1 verbatim and
    its handshake failed with "Incorrect passphrase"), every other character as it is (as
    Core does), except ``+``, ``&`` and ``#`` and a ``%`` that starts a ``%XX``, which only a
    decoding FFmpeg can receive: those are percent-encoded."""
    out: list[str] = []
    for i, ch in enumerate(passphrase):
        if ch == " ":
            out.append("+")
        elif ch in "+&#" or (ch == "%" and _PERCENT_ESCAPE.match(passphrase, i)):
            out.append(f"%{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


def placeholder_template(host: str, port: int, *, token: str = "", passphrase: str = "") -> Template:
    """Core's ``{srt}`` template for a listener on ``host:port`` (see module docstring)."""
    base = f"srt://{url_host(loopback_for(host))}:{port}?mode=caller&transtype=live&latency={{latency}}&streamid={{name}}"
    suffix = f",token:{token}" if token else ""
    query = f"&passphrase={passphrase_query_value(passphrase)}" if passphrase else ""
    return Template(
        base + ",mode:request" + suffix + query,
        base + ",mode:publish" + suffix + query,
        defaults={"latency": DEFAULT_LATENCY_US},
    )


class SrtSubsystem:
    """SRT ingest/egress beside the supervisor (see module docstring)."""

    def __init__(self, config: Config, *, app: App, placeholders: Placeholders,
                 collector: Callable[[], Collector | None], warnings: list[str]) -> None:
        self.config = config
        self.placeholders = placeholders
        self.server: SrtServer | None = None
        self.error: str | None = None
        self.sessions: SrtSessions | None = None
        try:
            lib = load()
        except SrtUnavailable as exc:
            self.error = f"SRT is enabled (srt.enable) but unavailable: {exc}"
            log.error("SRT server disabled: %s", exc)
            app.register_blueprint(srt_unavailable_blueprint(self.error))  # 503, not 404
            warnings.append(self.error)
            return
        try:
            self.server = SrtServer(
                address=config["srt.address"],
                passphrase=config["srt.passphrase"],
                token=config["srt.token"],
                hub=Hub(max_queue_bytes=config["relay.srt_queue_max_bytes"],
                        max_backlog_ms=config["relay.srt_max_backlog_ms"],
                        max_per_address=config["srt.max_connections_per_address"],
                        unlimited_addresses=OWN_ADDRESSES),
                lib=lib,
            )
        except ValueError as exc:
            self.error = f"srt.address/srt.passphrase: {exc}"
            log.error("SRT server disabled: %s", self.error)
            return
        self.sessions = SrtSessions(self.server, collector)
        app.register_blueprint(srt_blueprint(self.server))

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        server = self.server
        if server is None:
            task_status.started(self)
            return
        async with trio.open_nursery() as nursery:
            try:
                port = await nursery.start(server.run)
            except (SrtError, ValueError) as exc:
                self.error = f"cannot listen on {self.config['srt.address']}: {exc}"
                log.error("SRT server disabled: %s", self.error)
                task_status.started(self)
                return
            self.error = None
            template = placeholder_template(server.host, port, token=server.token,
                                            passphrase=server.passphrase)
            log.info("SRT server listening on %s:%d (libsrt %s)", server.host or "0.0.0.0",
                     port, server.lib.version)
            if self.sessions is not None:
                nursery.start_soon(self.sessions.run)
            with self.placeholders.provide("srt", template):
                task_status.started(self)
                await trio.sleep_forever()
