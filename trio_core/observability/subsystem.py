"""The observability subsystem: sessions, metrics history, Prometheus, OpenAPI (always on).

``install(ctx)``:

* a :class:`~.sessions.SessionRegistry` (``sessions.*``; persisted under
  ``<db.dir>/sessions/`` with ``sessions.persist``) with Core's collectors ``hls``,
  ``hlsingress``, ``rtmp``, ``srt``, ``ffmpeg``, ``http``, ``https`` plus ``webrtc`` — the
  RTMP/SRT servers fetch theirs with
  ``app.extensions[EXTENSION_KEY].sessions.collector("rtmp")``; HLS is accounted by the storage
  mounts (``StorageHTTP.sessions`` = :class:`.hls.HLSSessions`) and WebRTC viewers through the WHEP route's admission seam
  (:mod:`.webrtc_viewers`);
* the :class:`~.monitor.Monitor` with Core's sources (:mod:`.sources`); others register more
  with ``app.extensions[EXTENSION_KEY].monitor.register(source)`` (e.g. memfs as a
  :class:`~.sources.FilesystemSource`-like source named ``memfs``);
* the routes (:mod:`.routes`, :mod:`.openapi`) and a supervisor hook counting process
  state changes.

``run()`` owns the tasks, all inside its nursery and ended by cancellation: the history
sampler (every ``metrics.interval_seconds`` when ``metrics.enable``), the session tick (every
second: WebRTC viewers sync, idle HLS sessions end), the directory walker (``filesystem_*``
of the disk, in a worker thread every 10 s) and the persister (every
``sessions.persist_interval_sec``). When cancelled it writes the session history one last
time (shielded, at most 5 s, in a worker thread).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import trio

from relay import RelayStats

from ..api.app import APP_KEY
from ..config import Config, SettingError
from ..webrtc.whep import ADMISSION_KEY
from .hls import HLSSessions
from .monitor import History, Monitor
from .openapi import swagger_blueprint
from .prometheus import build_registry, exposition
from .routes import (
    metrics_blueprint,
    prometheus_blueprint,
    session_blueprint,
    widget_blueprint,
)
from .sessions import Collector, SessionRegistry
from .sources import (
    REFRESH_SECONDS,
    CpuSource,
    DiskSource,
    FilesystemSource,
    MemSource,
    NetSource,
    RestreamSource,
    SessionSource,
    StateCounter,
    UptimeSource,
)
from .webrtc_viewers import WebRTCSource, WebRTCViewers

__all__ = ["EXTENSION_KEY", "ObservabilitySubsystem", "create_subsystem"]

log = logging.getLogger(__name__)

EXTENSION_KEY = "trio_core_observability"
STORAGE_KEY = "trio_core_storage"  # the storage subsystem (installed before this one)
#: collectors whose egress shares one bitrate limit (Core: hls, rtmp, srt, ffmpeg; + webrtc)
COMPANIONS = ("hls", "webrtc", "rtmp", "srt", "ffmpeg")
TICK_SECONDS = 1.0
FINAL_PERSIST_TIMEOUT = 5.0


def _check(config: Config) -> None:
    if config["metrics.enable"]:
        if config["metrics.range_seconds"] <= 0:
            raise SettingError("metrics.range_seconds", "must be greater than 0")
        if config["metrics.interval_seconds"] <= 0:
            raise SettingError("metrics.interval_seconds", "must be greater than 0")
        if config["metrics.interval_seconds"] > config["metrics.range_seconds"]:
            raise SettingError("metrics.interval_seconds",
                               "must not be larger than metrics.range_seconds")
    if config["sessions.enable"] and config["sessions.session_timeout_sec"] < 1:
        raise SettingError("sessions.session_timeout_sec", "must be >= 1")


class ObservabilitySubsystem:
    """See module docstring. Attributes: ``monitor``, ``history`` (None unless
    ``metrics.enable``), ``sessions`` (None unless ``sessions.enable``), ``viewers``."""

    def __init__(self, config: Config) -> None:
        _check(config)
        self.config = config
        self.monitor = Monitor()
        self.history = (History(self.monitor, config["metrics.range_seconds"],
                                config["metrics.interval_seconds"])
                        if config["metrics.enable"] else None)
        self.sessions: SessionRegistry | None = None
        if config["sessions.enable"]:
            persist = (os.path.join(os.path.abspath(config["db.dir"]), "sessions")
                       if config["sessions.persist"] else None)
            self.sessions = SessionRegistry(
                max_sessions=config["sessions.max_sessions"],
                max_tx_bitrate=config["sessions.max_bitrate_mbit"] * 1024 * 1024,
                ignore=config["sessions.ip_ignorelist"],
                session_timeout=config["sessions.session_timeout_sec"],
                persist_dir=persist)
            for name in COMPANIONS:
                self.sessions.register(name)
            self.sessions.register("hlsingress", limited=False, companions=False)
            for name in ("http", "https"):  # as Core; nothing accounts into them yet
                self.sessions.register(name, companions=False)
        self.states = StateCounter()
        self.viewers: WebRTCViewers | None = None
        #: directory-tree sources refreshed in a worker thread (others may append theirs)
        self.filesystems: list[FilesystemSource] = []
        self.supervisor: Any = None
        self.core_id = str(config.values.get("id") or socket.gethostname())

    def install(self, ctx: Any) -> None:
        app, supervisor, config = ctx.app, ctx.supervisor, ctx.config
        supervisor.add_hook(self.states)
        started_at = app.extensions.get(APP_KEY, {}).get("started_at")
        disk_dir = os.path.abspath(config["storage.disk.dir"])

        def forwarder() -> Any:
            webrtc = app.extensions.get("trio_core_webrtc")
            return getattr(webrtc, "forwarder", None)

        webrtc = self.sessions.collector("webrtc") if self.sessions is not None else None
        self.viewers = WebRTCViewers(forwarder, webrtc, supervisor)
        app.extensions[ADMISSION_KEY] = self.viewers
        viewers = self.viewers

        @app.teardown_request
        async def release_whep_reservation(exc: BaseException | None) -> None:
            viewers.release()  # an offer that failed after admission frees its slot
        app.extensions[EXTENSION_KEY] = self

        self.filesystems.append(FilesystemSource("diskfs", disk_dir))
        self.supervisor = supervisor
        for source in (UptimeSource(started_at or 0.0), CpuSource(), MemSource(), NetSource(),
                       DiskSource(disk_dir), *self.filesystems,
                       RestreamSource(supervisor, self.states)):
            self.monitor.register(source)
        self.monitor.register(WebRTCSource(self.viewers))
        registry = self.sessions or SessionRegistry()
        self.monitor.register(SessionSource(registry, before=self.viewers.sync))

        app.register_blueprint(session_blueprint(registry, self.viewers.sync))
        app.register_blueprint(metrics_blueprint(self.monitor, self.history))
        app.register_blueprint(widget_blueprint(supervisor, registry, ctx.auth,
                                                self.viewers.sync))
        if config["metrics.enable_prometheus"]:
            prom = build_registry(self.monitor, self.core_id, self.viewers, supervisor.ids,
                                  relays=lambda: relay_stats(app, forwarder))
            app.register_blueprint(prometheus_blueprint(lambda: exposition(prom)))
        app.register_blueprint(swagger_blueprint())
        storage_http = getattr(app.extensions.get(STORAGE_KEY), "http", None)
        if self.sessions is not None and storage_http is not None:
            # Core's HLS middleware on the storage mounts (public port and {memfs} loopback)
            storage_http.sessions = HLSSessions(self.sessions.collector("hls"),
                                                self.sessions.collector("hlsingress"))

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                if self.history is not None:
                    nursery.start_soon(self._sample, self.history)
                nursery.start_soon(self._tick)
                nursery.start_soon(self._walk_filesystems)
                if self.sessions is not None and self.sessions.persist_dir is not None \
                        and self.config["sessions.persist_interval_sec"] > 0:
                    nursery.start_soon(self._persist, self.sessions,
                                       self.config["sessions.persist_interval_sec"])
                task_status.started(self)
        finally:
            if self.sessions is not None and self.sessions.persist_dir is not None:
                with trio.move_on_after(FINAL_PERSIST_TIMEOUT) as scope:
                    scope.shield = True
                    await self._save(self.sessions)

    async def _sample(self, history: History) -> None:
        while True:
            await trio.sleep(history.interval)
            try:
                history.sample()
            except Exception:  # a broken source must not take the server down
                log.exception("observability: metrics sample failed")

    async def _tick(self) -> None:
        while True:
            await trio.sleep(TICK_SECONDS)
            try:
                if self.viewers is not None:
                    self.viewers.sync()
                if self.sessions is not None:
                    self.sessions.expire()
                if self.supervisor is not None:
                    ids = self.supervisor.ids()
                    self.states.forget_missing(ids)
                    self.states.poll(self._processes(ids))
            except Exception:  # accounting must never take the server down
                log.exception("observability: session tick failed")

    def _processes(self, ids: list[str]) -> list[Any]:
        out = []
        for pid in ids:
            try:
                out.append(self.supervisor.get(pid))
            except KeyError:
                continue
        return out

    async def _walk_filesystems(self) -> None:
        while True:
            for fs in list(self.filesystems):
                await trio.to_thread.run_sync(fs.refresh)
            await trio.sleep(REFRESH_SECONDS)

    async def _persist(self, sessions: SessionRegistry, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            await self._save(sessions)

    @staticmethod
    async def _save(sessions: SessionRegistry) -> None:
        files = sessions.snapshot()
        try:
            await trio.to_thread.run_sync(sessions.write, files, abandon_on_cancel=True)
        except OSError as exc:
            log.warning("sessions: cannot persist the history: %s", exc)


def create_subsystem(config: Config) -> ObservabilitySubsystem:
    """Entry point used by :func:`trio_core.server.default_subsystems`."""
    return ObservabilitySubsystem(config)


def relay_stats(app: Any, forwarder: Callable[[], Any]) -> dict[str, RelayStats]:
    """The ``relay_*`` metrics' input: each running relay's :class:`relay.RelayStats` by
    server name (looked up per scrape: the RTMP/SRT subsystems install before this one)."""
    out: dict[str, RelayStats] = {}
    for name, key in (("rtmp", "trio_core_rtmp"), ("srt", "trio_core_srt")):
        server = getattr(app.extensions.get(key), "server", None)
        if server is not None:
            out[name] = server.relay_stats()
    fwd = forwarder()
    if fwd is not None:
        out["webrtc"] = fwd.relay_stats()
    return out


def session_collector(app: Any, name: str) -> Collector | None:
    """The session collector ``name`` of ``app`` (``"rtmp"``, ``"srt"``, …), or None when the
    observability subsystem is not installed or sessions are off. Servers call it per
    connection: observability is installed after them (``SUBSYSTEM_MODULES`` order)."""
    obs = app.extensions.get(EXTENSION_KEY)
    sessions = getattr(obs, "sessions", None)
    return sessions.collector(name) if sessions else None
