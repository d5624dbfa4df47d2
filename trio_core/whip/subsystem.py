"""The WHIP subsystem: WHIP ingest on the WebRTC forwarder's UDP mux, WHEP playback of WHIP
channels, ``GET /api/v3/whip``, the ``{whip}`` placeholder and the ``whip`` sessions.

Constructed by the composition root (:mod:`trio_core.server`) when ``whip.enable`` is true;
it needs the running WebRTC forwarder (``webrtc.enable``; :func:`check_settings` raises
StartupError naming the setting otherwise). ``run`` serves the channels
(:class:`~trio_core.whip.channels.WhipChannels`) and the loopback SDP feeds
(:class:`~trio_core.whip.feeds.SdpFeeds`), provides ``{whip}`` =
``http://127.0.0.1:<port>/<secret>/{name}.sdp`` while it runs, and accounts each publisher as
a session of the ``whip`` collector (reference = the channel name, ingress = received bytes)
until cancelled; then every publisher, WHIP channel and its viewers close.

ICE candidates, the UDP port and the certificate are the forwarder's, so WHIP and WHEP share
one UDP port.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from trio_core.config.settings import Config
from trio_core.config.startup_error import StartupError
from trio_core.engine.placeholders import Placeholders
from trio_core.http.auth import Authenticator
from trio_core.observability.sessions import Collector
from trio_core.web import App
from trio_core.webrtc.whep import Admission
from trio_core.whip.channels import WhipChannels
from trio_core.whip.feeds import SdpFeeds
from trio_core.whip.routes import whip_blueprint

if TYPE_CHECKING:
    from rtp.forwarder import Forwarder
    from rtp.publisher import Publisher

__all__ = ["WhipSubsystem", "check_settings"]

log = logging.getLogger(__name__)

SYNC_INTERVAL = 1.0


def check_settings(config: Config) -> None:
    """StartupError when ``whip.enable`` cannot work with the other settings."""
    if config["whip.enable"] and not config["webrtc.enable"]:
        raise StartupError("whip.enable needs webrtc.enable (WHIP uses the WebRTC UDP mux)")


def _session_id(publisher_id: str) -> str:
    return "whip-" + hashlib.sha256(publisher_id.encode()).hexdigest()[:18]


class WhipSubsystem:
    """WHIP ingest (see the module docstring)."""

    def __init__(self, config: Config, forwarder: Forwarder, *, app: App,
                 auth: Authenticator, placeholders: Placeholders,
                 collector: Callable[[], Collector | None],
                 admission: Admission | None = None) -> None:
        self.forwarder = forwarder
        self.placeholders = placeholders
        self.collector = collector
        self.token = config["whip.token"]
        self.settings = {
            "media_timeout": float(config["whip.timeout"] or 10),
            "linger": float(config["whip.linger"]),
            "max_publishers": config["whip.max_publishers"],
            "max_pending": config["whip.max_pending"],
            "max_bitrate": config["whip.max_bitrate_kbit"] * 1000,
            "setup_timeout": float(config["webrtc.pending_timeout"] or 15),
        }
        self.channels: WhipChannels | None = None
        self.feeds = SdpFeeds(lambda: self.channels)
        #: publisher id -> (session id, bytes accounted so far)
        self._sessions: dict[str, tuple[str, int]] = {}
        self._publishers: dict[str, Publisher] = {}
        app.register_blueprint(whip_blueprint(
            lambda: self.channels, forwarder, auth, token=self.token,
            play_token=config["whip.play_token"], admission=admission,
            ice_servers=config["webrtc.ice_servers"]))

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        channels = WhipChannels(self.forwarder, on_publisher=self._on_publisher,
                                **self.settings)  # type: ignore[arg-type]
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(channels.run)
                await nursery.start(self.feeds.run)
                self.channels = channels
                log.info("WHIP: POST /whip/{name} on the WebRTC UDP mux port %d%s; "
                         "{whip} = %s", self.forwarder.port,
                         "" if self.token else " (no whip.token: anyone who reaches the API "
                         "may publish)", self.feeds.template.replace(self.feeds.secret, "***"))
                with self.placeholders.provide("whip", self.feeds.template):
                    task_status.started(self)
                    while True:
                        await trio.sleep(SYNC_INTERVAL)
                        self.sync()
        finally:
            self.channels = None
            self.sync()
            for publisher_id in list(self._sessions):
                self._finish(publisher_id)

    # -- sessions ------------------------------------------------------------------------

    def _on_publisher(self, name: str, publisher: Publisher, opened: bool) -> None:
        collector = self.collector()
        if opened:
            self._publishers[publisher.id] = publisher
            if collector is not None and collector.collectable(publisher.client):
                sid = _session_id(publisher.id)
                collector.register_and_activate(sid, name, f"/whip/{name}", publisher.client)
                self._sessions[publisher.id] = (sid, 0)
            return
        self._account(publisher)
        self._finish(publisher.id)

    def _account(self, publisher: Publisher) -> None:
        entry = self._sessions.get(publisher.id)
        collector = self.collector()
        if entry is None or collector is None:
            return
        sid, seen = entry
        total = publisher.bytes + publisher.rtcp_bytes
        if total > seen:
            collector.ingress(sid, total - seen)
            self._sessions[publisher.id] = (sid, total)

    def _finish(self, publisher_id: str) -> None:
        self._publishers.pop(publisher_id, None)
        entry = self._sessions.pop(publisher_id, None)
        collector = self.collector()
        if entry is not None and collector is not None:
            collector.unregister(entry[0])

    def sync(self) -> None:
        """Move the publishers' received bytes into their sessions."""
        for publisher in list(self._publishers.values()):
            self._account(publisher)
