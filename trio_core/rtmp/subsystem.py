"""The RTMP subsystem: :class:`~trio_core.rtmp.server.RtmpServer`, ``GET /api/v3/rtmp`` and
the ``{rtmp}`` placeholder.

Loaded by :mod:`trio_core.server` when ``rtmp.enable`` is true. ``create_subsystem`` checks the
settings (``rtmp.app`` absolute; ``rtmp.enable_tls`` needs ``tls.cert_file``/``tls.key_file``,
loaded into an SSL context up front) and raises :class:`~trio_core.server.StartupError` naming
the key otherwise. ``run`` binds ``rtmp.address`` (and ``rtmp.address_tls``), then sets
``supervisor.placeholders["rtmp"]`` to ``rtmp://host:port[app]/{name}[?token=T]`` with the
bound port, so ``{rtmp,name=x}`` resolves as in Core; it serves until cancelled (the server
cancels it after every process has stopped) and removes the placeholder when it ends.

Default bind: ``127.0.0.1`` (like ``api.address``); set ``rtmp.address`` to ``:1935`` to take
streams from other machines — a warning is logged when that happens without ``rtmp.token``.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import trio

from ..config import Config, is_loopback_host, parse_address
from ..observability.subsystem import session_collector
from .api import rtmp_blueprint
from .paths import placeholder_template
from .server import RtmpServer

__all__ = ["RtmpSubsystem", "create_subsystem"]

log = logging.getLogger(__name__)

#: where the server's own FFmpeg processes connect from: never bounded per address
OWN_ADDRESSES = frozenset({"127.0.0.1", "::1"})


def _startup_error(message: str) -> Exception:
    from ..server import StartupError

    return StartupError(message)


def ssl_context_from(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side TLS context from PEM files (raises StartupError naming the problem)."""
    if not cert_file or not key_file:
        raise _startup_error("rtmp.enable_tls needs tls.cert_file and tls.key_file")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise _startup_error(f"tls.cert_file/tls.key_file: cannot load {cert_file}, {key_file}: {exc}") from None
    return ctx


class RtmpSubsystem:
    """Push ingest over RTMP(S) for processes (``{rtmp,name=…}``)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        app = config["rtmp.app"] or "/"
        if not app.startswith("/"):
            raise _startup_error(f"rtmp.app must be an absolute path like /live, got {app!r}")
        if len(app) > 1:
            app = app.rstrip("/")
        host, port = parse_address(config["rtmp.address"])
        tls_host, tls_port = parse_address(config["rtmp.address_tls"])
        ctx = None
        if config["rtmp.enable_tls"]:
            if (host, port) == (tls_host, tls_port) and port != 0:
                raise _startup_error("rtmp.address: the RTMP and RTMPS server can't listen on the same address")
            ctx = ssl_context_from(config["tls.cert_file"], config["tls.key_file"])
        self.host = host
        self.server = RtmpServer(host=host, port=port, app=app, token=config["rtmp.token"],
                                 tls_host=tls_host, tls_port=tls_port, ssl_context=ctx,
                                 max_queue_bytes=config["relay.queue_max_bytes"],
                                 max_skips=config["relay.max_skips"],
                                 max_gop_bytes=config["relay.gop_max_bytes"],
                                 setup_timeout=float(config["rtmp.setup_timeout"] or 10),
                                 max_connections_per_address=config[
                                     "rtmp.max_connections_per_address"],
                                 unlimited_addresses=OWN_ADDRESSES)
        self.supervisor: Any = None

    def install(self, ctx: Any) -> None:
        self.supervisor = ctx.supervisor
        self.server.sessions = lambda: session_collector(ctx.app, "rtmp")
        ctx.app.register_blueprint(rtmp_blueprint(self.server, ctx.auth))
        ctx.app.extensions["trio_core_rtmp"] = self

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.server.run)
                template = placeholder_template(self.host, self.server.ports[0], self.server.app,
                                                self.server.token)
                if self.supervisor is not None:
                    self.supervisor.placeholders["rtmp"] = template
                shown = self.host or "all interfaces"
                log.info("RTMP: listening on %s port %s%s; {rtmp} = %s", shown,
                         ",".join(map(str, sorted(set(self.server.ports)))),
                         f", RTMPS port {self.server.tls_ports[0]}" if self.server.tls_ports else "",
                         template.replace(self.server.token, "***") if self.server.token else template)
                if not is_loopback_host(self.host) and not self.server.token:
                    log.warning("RTMP: listening beyond loopback without rtmp.token: anyone who "
                                "can reach the port can publish and play")
                task_status.started(self)
        finally:
            if self.supervisor is not None:
                self.supervisor.placeholders.pop("rtmp", None)


def create_subsystem(config: Config) -> RtmpSubsystem:
    """Entry point used by :func:`trio_core.server.default_subsystems`."""
    return RtmpSubsystem(config)
