"""The WebRTC subsystem: one Forwarder (UDP mux), the process hook and the WHEP routes.

Constructed by the composition root (:mod:`trio_core.server`) when ``webrtc.enable`` is true,
with the :class:`~rtp.forwarder.Forwarder` it built (:func:`forwarder`), the supervisor, the
app, the authenticator, the FFmpeg binary and the WHEP admission (session accounting). The
constructor registers the :class:`~trio_core.webrtc.hook.WebRTCHook` with the supervisor, the
WHEP blueprint and the player pages; ``run`` serves the UDP mux until cancelled (the server
starts it before the supervisor and cancels it after every process has stopped).

Across a config reload (:mod:`trio_core.reload`) the forwarder is not the subsystem's: a
:class:`ForwarderCarry`, made by ``serve_reloading`` and living in its scope, runs it and hands
it to each ``serve`` (``build_services(config, carry=...)``) as long as the settings it is
built from (:func:`forwarder_settings`: every ``webrtc.*`` setting and the GOP bounds) stay
the same; then the subsystem only adds hook and routes over it and does not run it. While a
reload stops the processes the forwarder *holds* their Sources (``serve`` calls
:meth:`ForwarderCarry.hold` before it stops the supervisor): the UDP mux, each Source with
its producer ports and every viewer with its DTLS/SRTP state keep running, and each process
of the next ``serve`` takes its Source back on its first start (same ports: the new FFmpeg
continues it as a reconnect would), so viewers keep watching without a new offer. Sources
not taken back within :data:`RECLAIM_SECONDS` close. When the settings changed (or WebRTC
was turned off, or the server stops for good) the carried forwarder is closed instead, and
every viewer is told at once (RTCP BYE, DTLS close_notify).

Candidates: ``webrtc.public_ip`` and ``webrtc.nat_1_to_1_ips`` when set, else the bind
address (``webrtc.bind_address``; ``127.0.0.1`` when bound to all interfaces). With
``webrtc.tcp_address`` (ICE-TCP, :mod:`rtp.tcp`) the same IPs are announced with the TCP port
as ``tcptype passive`` candidates, below every UDP one. They are
logged at start, since unreachable candidates are the first thing users hit behind NAT.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from rtp.admission import AdmissionLimits
from trio_core.config.settings import Config
from trio_core.http.auth import Authenticator
from trio_core.http.site_pages import install_pages
from trio_core.web import App
from trio_core.webrtc.hook import WebRTCHook
from trio_core.webrtc.whep import Admission, whep_blueprint

if TYPE_CHECKING:
    from rtp.forwarder import Forwarder
    from trio_core.engine.supervisor import Supervisor

__all__ = ["ForwarderCarry", "WebRTCSubsystem", "forwarder", "forwarder_settings"]

log = logging.getLogger(__name__)

#: Seconds a Source held across a reload waits for its process to start again (the probe
#: alone may take up to 10 s); then it closes and its viewers are told.
RECLAIM_SECONDS = 20.0


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
    """The UDP mux and WHEP sessions of ``config`` (``webrtc.*``); not running yet.

    The WebRTC stack (``rtp.forwarder``: DTLS/OpenSSL, SRTP, ICE) is imported here, on the
    first forwarder, so a server with ``webrtc.enable`` off never loads it (~20 MB RSS)."""
    from rtp.forwarder import Forwarder
    from rtp.tcp import TcpLimits

    tcp_host: str | None = None
    tcp_port = 0
    if config["webrtc.tcp_address"]:
        host, _, port = config["webrtc.tcp_address"].rpartition(":")
        tcp_host, tcp_port = host.strip("[]"), int(port)
    return Forwarder(
        host=config["webrtc.bind_address"],
        port=config["webrtc.udp_mux_port"],
        advertise=advertised_ips(config),
        consent_timeout=float(config["webrtc.consent_timeout"] or 30),
        setup_timeout=float(config["webrtc.pending_timeout"] or 15),
        limits=admission_limits(config),
        gop_max_bytes=config["relay.gop_max_bytes"],
        gop_max_packets=config["relay.gop_max_packets"],
        tcp_host=tcp_host,
        tcp_port=tcp_port,
        tcp_limits=TcpLimits(max_connections=config["webrtc.tcp_max_connections"],
                             max_per_ip=config["webrtc.tcp_max_connections_per_ip"]),
        fanout_workers=config["webrtc.fanout_workers"] or None,
    )


def forwarder_settings(config: Config) -> tuple[tuple[str, Any], ...] | None:
    """What :func:`forwarder` is built from (every ``webrtc.*`` setting, the GOP bounds);
    None when WebRTC is off. A forwarder is kept across a reload only when this is equal."""
    if not config["webrtc.enable"]:
        return None
    names = sorted(n for n in config.values if n.startswith("webrtc."))
    names += ["relay.gop_max_bytes", "relay.gop_max_packets"]
    return tuple((n, repr(config[n])) for n in names)


class ForwarderCarry:
    """The WebRTC forwarder kept from one ``serve`` to the next (see the module docstring).

    Made by :func:`trio_core.reload.serve_reloading` with a nursery of its scope; the
    forwarder runs there, so it ends with that scope at the latest (every viewer told, the
    socket closed). ``serve`` gets it from :meth:`take`, calls :meth:`hold` when it stops
    for a reload; :meth:`aclose` ends it.
    """

    def __init__(self, nursery: trio.Nursery, *, reclaim_timeout: float = RECLAIM_SECONDS
                 ) -> None:
        self._nursery = nursery
        self.reclaim_timeout = reclaim_timeout
        self.forwarder: Forwarder | None = None
        self._settings: tuple[tuple[str, Any], ...] | None = None
        self._scope: trio.CancelScope | None = None
        self._done: trio.Event | None = None

    async def take(self, config: Config) -> Forwarder | None:
        """The running forwarder for ``config`` (None when ``webrtc.enable`` is off): the
        carried one when :func:`forwarder_settings` are unchanged (its held Sources wait
        :attr:`reclaim_timeout` seconds for their processes), else a new one, started in
        the carry's nursery after the old one was closed (its viewers told)."""
        settings = forwarder_settings(config)
        current = self.forwarder
        if current is not None and current.running and settings == self._settings:
            current.resume(self.reclaim_timeout)
            log.info("WebRTC: forwarder kept across the reload (%d source(s) held, %d "
                     "viewer(s))", len(current.held),
                     sum(len(s.peers) for s in current.sources.values()))
            return current
        if current is not None:
            log.info("WebRTC: settings changed; ending the viewers of the previous forwarder")
        await self.aclose()
        if settings is None:
            return None
        fwd = forwarder(config)
        self._scope, self._done = await self._nursery.start(self._run, fwd)
        self.forwarder, self._settings = fwd, settings
        return fwd

    async def _run(self, fwd: Forwarder, *,
                   task_status: trio.TaskStatus[tuple[trio.CancelScope, trio.Event]]
                   = trio.TASK_STATUS_IGNORED) -> None:
        done = trio.Event()
        started = False
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(fwd.run)
                    started = True
                    task_status.started((scope, done))
        except Exception:
            if not started:
                raise
            log.exception("WebRTC forwarder failed; a new one is made on the next reload")
        finally:
            done.set()

    def hold(self) -> None:
        """``serve`` stops for a reload: Sources of stopping processes are held."""
        if self.forwarder is not None:
            self.forwarder.hold()

    async def aclose(self) -> None:
        """End the carried forwarder: every viewer told, the socket closed."""
        scope, done = self._scope, self._done
        self.forwarder = self._settings = self._scope = self._done = None
        if scope is not None and done is not None:
            scope.cancel()
            with trio.CancelScope(shield=True):
                await done.wait()


class WebRTCSubsystem:
    """WHEP playback of every process with ``webrtc.enabled``."""

    def __init__(self, forwarder: Forwarder, *, app: App, supervisor: Supervisor,
                 auth: Authenticator, ffmpeg: str, admission: Admission | None,
                 run_forwarder: bool = True, ice_servers: list[dict[str, Any]] | None = None
                 ) -> None:
        self.forwarder = forwarder
        #: False when a :class:`ForwarderCarry` runs the forwarder (it outlives this serve)
        self.run_forwarder = run_forwarder
        self.hook = WebRTCHook(forwarder, ffmpeg, pid_records=supervisor.pid_records)
        supervisor.add_hook(self.hook)
        app.register_blueprint(whep_blueprint(supervisor, forwarder, auth, admission,
                                              ice_servers=ice_servers or ()))
        install_pages(app)

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        failed = False
        try:
            async with trio.open_nursery() as nursery:
                if self.run_forwarder:
                    port = await nursery.start(self.forwarder.run)
                else:  # carried across reloads: already running, not ours to stop
                    if not self.forwarder.running:
                        raise RuntimeError("the carried WebRTC forwarder is not running")
                    port = self.forwarder.port
                    nursery.start_soon(trio.sleep_forever)
                log.info("WebRTC: UDP mux on %s:%d, ICE candidates %s",
                         self.forwarder.mux.host, port,
                         ", ".join(f"{ip}:{p}" for ip, p in self.forwarder.candidates))
                if self.forwarder.tcp is not None:
                    log.info("WebRTC: ICE-TCP on %s:%d, passive candidates %s",
                             self.forwarder.tcp.host or "*", self.forwarder.tcp.port,
                             ", ".join(f"{ip}:{p}" for ip, p in
                                       self.forwarder.tcp_candidates))
                task_status.started(self)
        except Exception:
            failed = True  # the server runs us again: the hook (and its SDP dir) stays
            raise
        finally:
            if not failed:
                self.hook.close()
