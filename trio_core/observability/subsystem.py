"""The observability subsystem: sessions, metrics history, Prometheus, OpenAPI (always on).

The composition root (:mod:`trio_core.server`) builds the parts others need before any
subsystem exists — the :class:`~.sessions.SessionRegistry` (:func:`session_registry`:
``sessions.*``, persisted under ``<db.dir>/sessions/`` with ``sessions.persist``, Core's
collectors ``hls``, ``hlsingress``, ``rtmp``, ``srt``, ``ffmpeg``, ``http``, ``https`` plus
``webrtc`` and ``whip`` (WHIP publishers)), the :class:`~.monitor.Monitor` and its :class:`~.monitor.History`
(:func:`metrics_history`), the WebRTC viewers (:mod:`.webrtc_viewers`, the WHEP route's
admission) and the HLS session middleware of the storage mounts (:class:`trio_core.observability.hls_sessions.HLSSessions`) —
and hands them to :class:`ObservabilitySubsystem`, whose constructor registers Core's sources
(:mod:`trio_core.observability.metric_sources`) with the monitor, the routes (:mod:`.routes`, :mod:`trio_core.http.openapi` with the
routes answered below the app) and a supervisor hook counting process state changes.

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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from relay import RelayStats
from trio_core.config.settings import Config, SettingError
from trio_core.http.auth import Authenticator
from trio_core.http.openapi import ExternalRoute, swagger_blueprint
from trio_core.observability.metric_sources import (
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
from trio_core.observability.monitor import History, Monitor
from trio_core.observability.routes import (
    metrics_blueprint,
    prometheus_blueprint,
    session_blueprint,
    widget_blueprint,
)
from trio_core.observability.sessions import SessionRegistry
from trio_core.observability.webrtc_viewers import WebRTCSource, WebRTCViewers
from trio_core.web import App

if TYPE_CHECKING:
    from trio_core.engine.supervisor import Supervisor

__all__ = ["ObservabilitySubsystem", "metrics_history", "session_registry"]

log = logging.getLogger(__name__)

#: collectors whose egress shares one bitrate limit (Core: hls, rtmp, srt, ffmpeg; + webrtc)
COMPANIONS = ("hls", "webrtc", "rtmp", "srt", "ffmpeg")
TICK_SECONDS = 1.0
FINAL_PERSIST_TIMEOUT = 5.0


def metrics_history(config: Config, monitor: Monitor) -> History | None:
    """The metrics history over ``monitor`` (None unless ``metrics.enable``); SettingError
    names an unusable ``metrics.*`` setting."""
    if not config["metrics.enable"]:
        return None
    if config["metrics.range_seconds"] <= 0:
        raise SettingError("metrics.range_seconds", "must be greater than 0")
    if config["metrics.interval_seconds"] <= 0:
        raise SettingError("metrics.interval_seconds", "must be greater than 0")
    if config["metrics.interval_seconds"] > config["metrics.range_seconds"]:
        raise SettingError("metrics.interval_seconds",
                           "must not be larger than metrics.range_seconds")
    return History(monitor, config["metrics.range_seconds"], config["metrics.interval_seconds"])


def session_registry(config: Config) -> SessionRegistry | None:
    """Core's session collectors (None unless ``sessions.enable``); SettingError names an
    unusable ``sessions.*`` setting."""
    if not config["sessions.enable"]:
        return None
    if config["sessions.session_timeout_sec"] < 1:
        raise SettingError("sessions.session_timeout_sec", "must be >= 1")
    persist = (os.path.join(os.path.abspath(config["db.dir"]), "sessions")
               if config["sessions.persist"] else None)
    sessions = SessionRegistry(
        max_sessions=config["sessions.max_sessions"],
        max_tx_bitrate=config["sessions.max_bitrate_mbit"] * 1024 * 1024,
        ignore=config["sessions.ip_ignorelist"],
        session_timeout=config["sessions.session_timeout_sec"],
        persist_dir=persist)
    for name in COMPANIONS:
        sessions.register(name)
    sessions.register("hlsingress", limited=False, companions=False)
    sessions.register("whip", limited=False, companions=False)  # WHIP publishers (ingest)
    for name in ("http", "https"):  # as Core; nothing accounts into them yet
        sessions.register(name, companions=False)
    return sessions


class ObservabilitySubsystem:
    """See module docstring. Attributes: ``monitor``, ``history`` (None unless
    ``metrics.enable``), ``sessions`` (None unless ``sessions.enable``), ``viewers``."""

    def __init__(self, config: Config, *, app: App, supervisor: Supervisor,
                 auth: Authenticator, monitor: Monitor, history: History | None,
                 sessions: SessionRegistry | None, viewers: WebRTCViewers, started_at: float,
                 openapi_routes: Sequence[ExternalRoute],
                 relays: Callable[[], dict[str, RelayStats]] = dict,
                 collectors: Sequence[object] = ()) -> None:
        self.config = config
        self.monitor = monitor
        self.history = history
        self.sessions = sessions
        self.viewers = viewers
        self.supervisor = supervisor
        self.states = StateCounter()
        self.core_id = str(config.values.get("id") or socket.gethostname())
        disk_dir = os.path.abspath(config["storage.disk.dir"])
        #: directory-tree sources refreshed in a worker thread
        self.filesystems: list[FilesystemSource] = [FilesystemSource("diskfs", disk_dir)]
        supervisor.add_hook(self.states)

        @app.teardown_request
        async def release_whep_reservation(exc: BaseException | None) -> None:
            viewers.release()  # an offer that failed after admission frees its slot

        for source in (UptimeSource(started_at), CpuSource(), MemSource(), NetSource(),
                       DiskSource(disk_dir), *self.filesystems,
                       RestreamSource(supervisor, self.states)):
            monitor.register(source)
        monitor.register(WebRTCSource(viewers))
        registry = sessions or SessionRegistry()
        monitor.register(SessionSource(registry, before=viewers.sync))

        app.register_blueprint(session_blueprint(registry, viewers.sync))
        app.register_blueprint(metrics_blueprint(monitor, history))
        app.register_blueprint(widget_blueprint(supervisor, registry, auth, viewers.sync))
        if config["metrics.enable_prometheus"]:
            # prometheus_client (~3 MB) only when /metrics is served (issue 23, Memory)
            from trio_core.observability.prometheus import build_registry, exposition

            prom = build_registry(monitor, self.core_id, viewers, supervisor.ids,
                                  relays=relays, collectors=collectors)
            app.register_blueprint(prometheus_blueprint(lambda: exposition(prom)))
        app.register_blueprint(swagger_blueprint(openapi_routes))

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
                self.viewers.sync()
                if self.sessions is not None:
                    self.sessions.expire()
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
