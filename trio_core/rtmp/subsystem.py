"""The RTMP subsystem: :class:`~trio_core.rtmp.server.RtmpServer`, ``GET /api/v3/rtmp`` and
the ``{rtmp}`` placeholder.

Constructed by the composition root (:mod:`trio_core.server`) when ``rtmp.enable`` is true.
:func:`rtmp_server` checks the settings (``rtmp.app`` absolute; ``rtmp.enable_tls`` needs
``tls.cert_file``/``tls.key_file``, loaded into an SSL context up front) and raises
:class:`~trio_core.config.startup_error.StartupError` naming the key otherwise. ``run`` binds
``rtmp.address`` (and ``rtmp.address_tls``), then provides ``{rtmp}`` =
``rtmp://host:port[app]/{name}[?token=T]`` with the bound port while it runs, so
``{rtmp,name=x}`` resolves as in Core; it serves until cancelled (the server cancels it after
every process has stopped) and the placeholder is withdrawn when it ends.

Default bind: ``127.0.0.1`` (like ``api.address``); set ``rtmp.address`` to ``:1935`` to take
streams from other machines — a warning is logged when that happens without ``rtmp.token``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import trio

from trio_core.config.settings import Config
from trio_core.config.startup_error import StartupError
from trio_core.engine.placeholders import Placeholders
from trio_core.http.auth import Authenticator
from trio_core.observability.sessions import Collector
from trio_core.rtmp.api import rtmp_blueprint
from trio_core.rtmp.paths import placeholder_template
from trio_core.rtmp.server import RtmpServer
from trio_core.util.addresses import is_loopback_host, parse_address
from trio_core.web import App

__all__ = ["RtmpSubsystem", "rtmp_server"]

log = logging.getLogger(__name__)

#: where the server's own FFmpeg processes connect from: never bounded per address
OWN_ADDRESSES = frozenset({"127.0.0.1", "::1"})


def ssl_context_from(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side TLS context from PEM files (raises StartupError naming the problem)."""
    if not cert_file or not key_file:
        raise StartupError("rtmp.enable_tls needs tls.cert_file and tls.key_file")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"tls.cert_file/tls.key_file: cannot load {cert_file}, {key_file}: {exc}") from None
    return ctx


def rtmp_server(config: Config) -> RtmpServer:
    """The RTMP server of ``config`` (``rtmp.*``, ``tls.*``), not running yet; StartupError
    names a setting it cannot use."""
    app = config["rtmp.app"] or "/"
    if not app.startswith("/"):
        raise StartupError(f"rtmp.app must be an absolute path like /live, got {app!r}")
    if len(app) > 1:
        app = app.rstrip("/")
    host, port = parse_address(config["rtmp.address"])
    tls_host, tls_port = parse_address(config["rtmp.address_tls"])
    ctx = None
    if config["rtmp.enable_tls"]:
        if (host, port) == (tls_host, tls_port) and port != 0:
            raise StartupError("rtmp.address: the RTMP and RTMPS server can't listen on the same address")
        ctx = ssl_context_from(config["tls.cert_file"], config["tls.key_file"])
    return RtmpServer(host=host, port=port, app=app, token=config["rtmp.token"],
                      tls_host=tls_host, tls_port=tls_port, ssl_context=ctx,
                      max_queue_bytes=config["relay.queue_max_bytes"],
                      max_skips=config["relay.max_skips"],
                      max_gop_bytes=config["relay.gop_max_bytes"],
                      setup_timeout=float(config["rtmp.setup_timeout"] or 10),
                      max_connections_per_address=config["rtmp.max_connections_per_address"],
                      unlimited_addresses=OWN_ADDRESSES,
                      # plain-RTMP players on the native sender pool, shared with WebRTC
                      sender_workers=config["webrtc.fanout_workers"] or None)


class RtmpSubsystem:
    """Push ingest over RTMP(S) for processes (``{rtmp,name=…}``)."""

    def __init__(self, server: RtmpServer, *, app: App, auth: Authenticator,
                 placeholders: Placeholders, collector: Callable[[], Collector | None]) -> None:
        self.server = server
        self.host = server.host
        self.placeholders = placeholders
        server.sessions = collector
        app.register_blueprint(rtmp_blueprint(server, auth))

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.server.run)
            template = placeholder_template(self.host, self.server.ports[0], self.server.app,
                                            self.server.token)
            shown = self.host or "all interfaces"
            log.info("RTMP: listening on %s port %s%s; {rtmp} = %s", shown,
                     ",".join(map(str, sorted(set(self.server.ports)))),
                     f", RTMPS port {self.server.tls_ports[0]}" if self.server.tls_ports else "",
                     template.replace(self.server.token, "***") if self.server.token else template)
            if not is_loopback_host(self.host) and not self.server.token:
                log.warning("RTMP: listening beyond loopback without rtmp.token: anyone who "
                            "can reach the port can publish and play")
            with self.placeholders.provide("rtmp", template):
                task_status.started(self)
                await trio.sleep_forever()
