"""The WebRTC subsystem: one Forwarder (UDP mux), the process hook and the WHEP routes.

Constructed by the composition root (:mod:`trio_core.server`) when ``webrtc.enable`` is true,
with the :class:`~rtp.forwarder.Forwarder` it built (:func:`forwarder`), the supervisor, the
app, the authenticator, the FFmpeg binary and the WHEP admission (session accounting). The
constructor registers the :class:`~trio_core.webrtc.hook.WebRTCHook` with the supervisor, the
WHEP blueprint and the player pages; ``run`` serves the UDP mux until cancelled (the server
starts it before the supervisor and cancels it after every process has stopped).

Candidates: ``webrtc.public_ip`` and ``webrtc.nat_1_to_1_ips`` when set, else the bind
address (``webrtc.bind_address``; ``127.0.0.1`` when bound to all interfaces). They are
logged at start, since unreachable candidates are the first thing users hit behind NAT.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
from quart_trio import QuartTrio

from rtp.admission import AdmissionLimits
from rtp.forwarder import Forwarder
from trio_core.config.settings import Config
from trio_core.http.auth import Authenticator
from trio_core.http.site_pages import install_pages
from trio_core.webrtc.hook import WebRTCHook
from trio_core.webrtc.whep import Admission, whep_blueprint

if TYPE_CHECKING:
    from trio_core.engine.supervisor import Supervisor

__all__ = ["WebRTCSubsystem", "forwarder"]

log = logging.getLogger(__name__)


def advertised_ips(config: Config) -> list[str]:
    """The IPs announced in ICE candidates (public IP first, then NAT 1:1 IPs)."""
    ips: list[str] = []
    if config["webrtc.public_ip"]:
        ips.append(config["webrtc.public_ip"])
    for ip in config["webrtc.nat_1_to_1_ips"]:
        if ip not in ips:
            ips.append(ip)
    return ips


def admission_limits(config: Config) -> AdmissionLimits:
    """The ``webrtc.max_*`` settings as :class:`~rtp.admission.AdmissionLimits`."""
    return AdmissionLimits(
        max_viewers=config["webrtc.max_viewers"],
        max_viewers_per_source=config["webrtc.max_viewers_per_process"],
        max_pending=config["webrtc.max_pending"],
        max_pending_per_source=config["webrtc.max_pending_per_process"],
        max_pending_per_client=config["webrtc.max_pending_per_client"],
    )


def forwarder(config: Config) -> Forwarder:
    """The UDP mux and WHEP sessions of ``config`` (``webrtc.*``); not running yet."""
    return Forwarder(
        host=config["webrtc.bind_address"],
        port=config["webrtc.udp_mux_port"],
        advertise=advertised_ips(config),
        setup_timeout=float(config["webrtc.pending_timeout"] or 15),
        limits=admission_limits(config),
        gop_max_bytes=config["relay.gop_max_bytes"],
        gop_max_packets=config["relay.gop_max_packets"],
    )


class WebRTCSubsystem:
    """WHEP playback of every process with ``webrtc.enabled``."""

    def __init__(self, forwarder: Forwarder, *, app: QuartTrio, supervisor: Supervisor,
                 auth: Authenticator, ffmpeg: str, admission: Admission | None) -> None:
        self.forwarder = forwarder
        self.hook = WebRTCHook(forwarder, ffmpeg, pid_records=supervisor.pid_records)
        supervisor.add_hook(self.hook)
        app.register_blueprint(whep_blueprint(supervisor, forwarder, auth, admission))
        install_pages(app)

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        failed = False
        try:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(self.forwarder.run)
                log.info("WebRTC: UDP mux on %s:%d, ICE candidates %s",
                         self.forwarder.mux.host, port,
                         ", ".join(f"{ip}:{p}" for ip, p in self.forwarder.candidates))
                task_status.started(self)
        except Exception:
            failed = True  # the server runs us again: the hook (and its SDP dir) stays
            raise
        finally:
            if not failed:
                self.hook.close()
