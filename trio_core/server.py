"""The server's composition root: builds every part in dependency order and runs them.

``await nursery.start(serve, config)`` checks the config (bind policy, FFmpeg), ends the
FFmpegs a crashed previous instance left running (pid records in ``db.dir``, see
:mod:`trio_core.engine.pid_records`) before it starts anything, then :func:`build_services` builds the
:class:`Services` — one typed object holding every shared part, each built from the ones
before it (FFmpeg, store, placeholders, supervisor, config store and identity, auth, log ring,
sessions, monitor, forwarder, WHEP admission, storages and their ASGI mounts, the app, the
OpenAPI routes answered below the app) — and :func:`build_subsystems` constructs the enabled
subsystems, listed explicitly, each getting what it needs in its constructor (a disabled one
is simply not constructed). ``serve`` then runs them and reports a :class:`Running` (URL,
port, services) through ``task_status``. With ``demo.enable`` the demo process is added only
when the db is fresh (no ``db.json`` yet), so a deleted demo stays deleted.

A :class:`Subsystem` only has ``run(task_status=...)``: it is started in the server nursery
*before* the supervisor (so the placeholders it provides exist and its hooks work when
processes autostart) and cancelled *after* the supervisor has stopped. A subsystem whose
``run`` fails after it started is logged and restarted with exponential backoff
(:func:`run_restarting`), never left dead while the server runs; one that fails before it
started fails the start.

Shutdown order, whether triggered by ``Running.shutdown()``, ``shutdown_trigger`` returning
(the CLI passes SIGINT/SIGTERM), a reload request (:class:`Lifecycle`) or by cancellation:
the HTTP server (:mod:`trio_core.httpd`) stops accepting and finishes the requests in flight
(graceful, at most 3 s), then the supervisor is
cancelled (stops every FFmpeg, orders unchanged, so they come back on the next start), then
the subsystems are cancelled. When ``serve`` returns nothing it started is left running —
except, with a ``carry`` (:func:`trio_core.reload.serve_reloading`), the WebRTC forwarder,
which the carry owns: on a reload its Sources and viewers are held for the next ``serve``
(:class:`~trio_core.webrtc.subsystem.ForwarderCarry`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import trio

from relay import RelayStats
from trio_core.api.process_routes import PROCESS_PREFIX, ProcessPoll, Views, process_blueprint
from trio_core.api.subsystem import CoreApiSubsystem
from trio_core.config.bind_policy import check_bind
from trio_core.config.settings import Config, SettingError
from trio_core.config.startup_error import StartupError
from trio_core.config.v3_mapping import CoreConfigStore
from trio_core.engine.pid_records import PidRecords
from trio_core.engine.placeholders import Placeholders
from trio_core.engine.process import EngineTimings
from trio_core.engine.process_config import ConfigError, ProcessConfig
from trio_core.engine.store import Store
from trio_core.engine.supervisor import DuplicateProcess, Supervisor
from trio_core.ffmpeg.binary import FFmpegNotFound, check_version, find_ffmpeg
from trio_core.ffmpeg.skills import SkillsCache
from trio_core.http.app import add_fallback_index, create_app
from trio_core.http.auth import Authenticator
from trio_core.http.login_throttle import LoginThrottle
from trio_core.http.openapi import ExternalRoute
from trio_core.httpd.asgi import AsgiHandler, lifespan
from trio_core.httpd.dispatch import Direct, Dispatch
from trio_core.httpd.server import HttpServer, ServerLimits, bind_listeners
from trio_core.observability.hls_sessions import HLSSessions
from trio_core.observability.monitor import History, Monitor
from trio_core.observability.sessions import Collector, SessionRegistry
from trio_core.observability.subsystem import (
    ObservabilitySubsystem,
    metrics_history,
    session_registry,
)
from trio_core.observability.webrtc_viewers import WebRTCViewers
from trio_core.storage.mounts import StorageHTTP
from trio_core.storage.openapi import storage_routes
from trio_core.storage.subsystem import Storages, StorageSubsystem, storages
from trio_core.util.log_ring import LogRing
from trio_core.web import App
from trio_core.webrtc.subsystem import ForwarderCarry, WebRTCSubsystem, forwarder
from trio_core.whip.subsystem import WhipSubsystem, check_settings

if TYPE_CHECKING:  # the WebRTC stack is imported only when webrtc.enable (memory)
    from rtp.forwarder import Forwarder
    from trio_core.cluster.node import ClusterNode  # only with cluster.enable (coredis)
    from trio_core.cluster.relay import EdgeRelay
    from trio_core.rtmp.server import RtmpServer  # only with rtmp.enable (memory)
    from trio_core.srt.subsystem import SrtSubsystem  # only with srt.enable (memory)

__all__ = ["Lifecycle", "Running", "Services", "Subsystem", "build_services",
           "build_subsystems", "run_restarting", "serve"]

log = logging.getLogger(__name__)

DEMO_PROCESS_ID = "demo"
#: first and largest wait before a failed subsystem runs again (doubling in between)
RESTART_BACKOFF = (0.5, 30.0)
S = TypeVar("S")


class Subsystem(Protocol):
    """A part of the server living beside the supervisor (WebRTC, RTMP, storage, …). It gets
    what it needs in its constructor; the server only runs it."""

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; call ``task_status.started()`` when ready."""


@dataclass
class Lifecycle:
    """How a part asks the running ``serve`` to stop: ``stop`` ends it gracefully;
    :meth:`request_reload` (Core's ``GET /api/v3/config/reload``) also marks the stop as a
    reload, which :func:`trio_core.reload.serve_reloading` acts on."""

    stop: trio.Event = field(default_factory=trio.Event)
    reload_requested: bool = False
    reload_config_file: str | None = None  # the config file a reload loads

    def request_reload(self, config_file: str | None = None) -> None:
        """Stop ``serve`` and ask :func:`trio_core.reload.serve_reloading` to start it again."""
        self.reload_requested = True
        self.reload_config_file = config_file
        self.stop.set()


@dataclass
class Services:
    """Every shared part of one server run, in the order :func:`build_services` builds them."""

    config: Config
    lifecycle: Lifecycle
    started_at: float
    ffmpeg: str  # the FFmpeg binary every FFmpeg the server starts runs
    skills: SkillsCache
    pid_records: PidRecords
    store: Store
    fresh_db: bool  # no db.json before this start
    placeholders: Placeholders
    supervisor: Supervisor
    config_store: CoreConfigStore  # Core-layout config and the instance identity
    auth: Authenticator
    log_ring: LogRing
    monitor: Monitor
    history: History | None
    sessions: SessionRegistry | None
    forwarder: Forwarder | None  # None unless webrtc.enable
    forwarder_carried: bool  # run by a ForwarderCarry (kept across reloads), not by this serve
    viewers: WebRTCViewers  # the WHEP admission and viewer accounting
    storages: Storages
    openapi_routes: list[ExternalRoute]  # routes answered below the app (storage mounts)
    app: App
    storage_http: StorageHTTP  # the app's ASGI entry: the storage mounts around the app
    warnings: list[str]  # problems subsystems found at start (GET /api implementation.warnings)
    cluster: ClusterNode | None = None  # cluster.enable: this node's member of the cluster
    relay: EdgeRelay | None = None  # cluster.relay (+ webrtc.enable): the edge relay
    #: requests the HTTP server answers before the app (target prefix, route): see
    #: :mod:`trio_core.httpd.dispatch` (the process list and state polls, memfs files)
    direct_routes: list[tuple[bytes, Direct]] = field(default_factory=list)

    def collector(self, name: str) -> Collector | None:
        """The session collector ``name`` (None when sessions are off)."""
        return self.sessions.collector(name) if self.sessions is not None else None


@dataclass
class Running:
    """Handed out by ``serve`` through ``task_status`` once the API accepts connections."""

    url: str
    urls: list[str]
    host: str
    port: int
    services: Services
    subsystems: Sequence[Subsystem]

    @property
    def supervisor(self) -> Supervisor:
        return self.services.supervisor

    @property
    def app(self) -> App:
        return self.services.app

    def subsystem(self, kind: type[S]) -> S:
        """The running subsystem of class ``kind`` (LookupError when not constructed)."""
        for sub in self.subsystems:
            if isinstance(sub, kind):
                return sub
        raise LookupError(f"no {kind.__name__} in this server")

    def shutdown(self) -> None:
        """Ask ``serve`` to stop gracefully (returns at once; ``serve`` returns when done)."""
        self.services.lifecycle.stop.set()


async def build_services(config: Config, *, timings: EngineTimings | None = None,
                         carry: ForwarderCarry | None = None) -> Services:
    """Check ``config`` and build every shared part in dependency order (nothing runs yet,
    except ending the FFmpegs a crashed previous instance left, before anything else, and
    the forwarder of a ``carry``: the one of the previous ``serve`` when the WebRTC settings
    are unchanged, else a new one; see :class:`~trio_core.webrtc.subsystem.ForwarderCarry`).

    Raises StartupError (PublicBindRefused, missing FFmpeg, unusable dirs or config file),
    SettingError (an unusable ``metrics.*``/``sessions.*`` setting), ``StoreError``.
    """
    check_bind(config)
    try:
        ffmpeg = find_ffmpeg(config["ffmpeg.binary"])
    except FFmpegNotFound as exc:
        raise StartupError(f"ffmpeg.binary: {exc}") from None
    db_dir = os.path.abspath(config["db.dir"])
    disk_dir = os.path.abspath(config["storage.disk.dir"])
    for key, path in (("db.dir", db_dir), ("storage.disk.dir", disk_dir)):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"{key}: cannot create {path}: {exc.strerror}") from None
    try:
        config_store = CoreConfigStore(config)
    except (SettingError, OSError) as exc:
        raise StartupError(f"config: {exc}") from None
    monitor = Monitor()
    history = metrics_history(config, monitor)
    sessions = session_registry(config)

    # before anything starts: end FFmpegs a crashed previous instance left running
    pid_records = PidRecords(db_dir)
    await pid_records.end_leftovers()
    await check_version(ffmpeg, record=pid_records)  # warns when the Restreamer UI would not
    store = Store(db_dir)
    fresh_db = not store.path.exists()
    placeholders = Placeholders()
    cluster_on = config["cluster.enable"]  # then Redis holds the processes, db.json a cache
    system_store = None
    if cluster_on:  # the supervisor keeps only the global metadata, in Redis
        from trio_core.cluster.subsystem import SystemMetadataStore
        system_store = SystemMetadataStore()
    supervisor = Supervisor(
        ffmpeg=ffmpeg,
        store=system_store if system_store is not None else store,  # type: ignore[arg-type]
        pid_records=pid_records,
        placeholders=placeholders,
        log_lines=config["ffmpeg.log.max_lines"],
        log_history=config["ffmpeg.log.max_history"],
        max_processes=config["ffmpeg.max_processes"],
        max_config_bytes=config["db.max_process_config_bytes"],
        max_metadata_bytes=config["db.max_metadata_value_bytes"],
        timings=timings,  # the engine's waits (None: production values; tests shrink them)
    )
    auth = Authenticator(
        enabled=config["api.auth.enable"],
        username=config["api.auth.username"],
        password=config["api.auth.password"],
        secret=config["api.auth.jwt.secret"],
        disable_localhost=config["api.auth.disable_localhost"],
        login_max_delay=config["api.auth.login_backoff_max_ms"] / 1000,
    )
    auth.login_delay = config["api.auth.login_backoff_ms"] / 1000
    if carry is not None:  # serve_reloading: the forwarder outlives this serve
        webrtc = await carry.take(config)
    else:
        webrtc = forwarder(config) if config["webrtc.enable"] else None
    collector = sessions.collector("webrtc") if sessions is not None else None
    viewers = WebRTCViewers(lambda: webrtc, collector, supervisor)
    stores = storages(config)
    started_at = time.time()
    warnings: list[str] = []  # problems subsystems find at start, shown in GET /api
    app = create_app(auth, instance=config_store.instance, started_at=started_at,
                     warnings=warnings)
    cluster = None
    relay = None
    if cluster_on:  # cluster on Redis (issue 20): cluster-wide process routes, /api/v3/cluster
        from trio_core.cluster.subsystem import cluster_node, install_routes
        cluster = cluster_node(config, supervisor, instance_id=config_store.instance.id,
                               name=config_store.instance.name, cache=store,
                               pid_records=pid_records, system=system_store)
        direct: list[tuple[bytes, Direct]] = []
    else:
        views = Views()  # prerendered process parts, shared by the routes and the direct one
        app.register_blueprint(process_blueprint(supervisor, views))
        direct = [(PROCESS_PREFIX, ProcessPoll(supervisor, views, auth))]
    token_ok = None
    if auth.enabled:
        token_ok = lambda token: auth.verify(token, "access") is not None  # noqa: E731
    # the app's ASGI entry: the storage mounts (memfs, disk, /api/v3/fs files) answer below it
    storage_http = StorageHTTP(
        app.asgi_app, memfs=stores.memfs, disk=stores.disk,
        memfs_credentials=stores.credentials,
        cors_origins=config["storage.cors.origins"], api_token_ok=token_ok,
        routes=lambda: app.url_map,
        # wrong memfs credentials back off per address as /api/login does
        throttle=LoginThrottle(delay=config["api.auth.login_backoff_ms"] / 1000,
                               max_delay=config["api.auth.login_backoff_max_ms"] / 1000),
    )
    if sessions is not None:  # Core's HLS middleware on the mounts (public and {memfs} port)
        storage_http.sessions = HLSSessions(sessions.collector("hls"),
                                            sessions.collector("hlsingress"))
    app.asgi_app = storage_http  # type: ignore[method-assign]
    direct.append((b"/memfs/", storage_http.direct_memfs))
    if cluster is not None:  # after the process routes' slot; files of other nodes too
        if config["cluster.relay"] and webrtc is not None:  # the edge relay (issue 20)
            from trio_core.cluster.relay import EdgeRelay
            relay = EdgeRelay(cluster, webrtc, auth, viewers)
        elif config["cluster.relay"]:
            warnings.append("cluster.relay needs webrtc.enable; WHEP viewers of processes on "
                            "other nodes are redirected (307) to the owner")
            log.warning("%s", warnings[-1])
        install_routes(app, cluster, storage_http, relay)
    return Services(
        config=config, lifecycle=Lifecycle(), started_at=started_at, ffmpeg=ffmpeg,
        skills=SkillsCache(ffmpeg, record=pid_records), pid_records=pid_records, store=store, fresh_db=fresh_db,
        placeholders=placeholders, supervisor=supervisor, config_store=config_store,
        auth=auth, log_ring=LogRing(config["log.max_lines"]), monitor=monitor,
        history=history, sessions=sessions, forwarder=webrtc,
        forwarder_carried=carry is not None, viewers=viewers,
        storages=stores, openapi_routes=storage_routes(), app=app, storage_http=storage_http,
        warnings=warnings, cluster=cluster, relay=relay, direct_routes=direct,
    )


def cluster_collectors(s: Services) -> list[object]:
    """The cluster's Prometheus collectors (none unless ``cluster.enable``)."""
    if s.cluster is None:
        return []
    from trio_core.cluster.metrics import ClusterMetrics
    return [ClusterMetrics(s.cluster, s.relay)]


def build_subsystems(s: Services) -> list[Subsystem]:
    """The subsystems ``s.config`` enables, in start order, each constructed with what it
    needs (constructors register their routes and supervisor hooks)."""
    config = s.config
    # settings first: a refused one must not leave a half-built subsystem behind
    rtmp: RtmpServer | None = None
    if config["rtmp.enable"]:  # imported only when enabled (idle memory, issue 23)
        from trio_core.rtmp.subsystem import rtmp_server
        rtmp = rtmp_server(config)
    check_settings(config)  # whip.enable needs webrtc.enable
    subsystems: list[Subsystem] = []
    if s.cluster is not None:  # cluster.enable (issue 20): registered in Redis before anything
        from trio_core.cluster.subsystem import ClusterSubsystem
        subsystems.append(ClusterSubsystem(s.cluster))
    subsystems += [
        # Core's server-wide API: skills, config (+ reload), global metadata, log (issue 9)
        CoreApiSubsystem(s.app, s.supervisor, skills=s.skills, config_store=s.config_store,
                         log_ring=s.log_ring, request_reload=s.lifecycle.request_reload),
        # storage: memfs, disk, /api/v3/fs, cleanup rules, {diskfs}, {memfs} (issue 10)
        StorageSubsystem(s.storages, s.storage_http, app=s.app, supervisor=s.supervisor,
                         placeholders=s.placeholders),
    ]
    if s.forwarder is not None:  # webrtc.enable: WebRTC / WHEP playback
        subsystems.append(WebRTCSubsystem(
            s.forwarder, app=s.app, supervisor=s.supervisor, auth=s.auth, ffmpeg=s.ffmpeg,
            admission=s.viewers, run_forwarder=not s.forwarder_carried,
            ice_servers=config["webrtc.ice_servers"]))
    if s.relay is not None:  # cluster.relay: the edge relay, ends before the forwarder
        from trio_core.cluster.subsystem import EdgeRelaySubsystem
        subsystems.append(EdgeRelaySubsystem(s.relay))
    if s.forwarder is not None and config["whip.enable"]:  # WHIP ingest, {whip} (issue 19)
        subsystems.append(WhipSubsystem(
            config, s.forwarder, app=s.app, auth=s.auth, placeholders=s.placeholders,
            collector=lambda: s.collector("whip"), admission=s.viewers))
    if rtmp is not None:  # rtmp.enable: RTMP server, {rtmp} (issue 11)
        from trio_core.rtmp.subsystem import RtmpSubsystem
        subsystems.append(RtmpSubsystem(
            rtmp, app=s.app, auth=s.auth, placeholders=s.placeholders,
            collector=lambda: s.collector("rtmp")))
    srt: SrtSubsystem | None = None
    if config["srt.enable"]:  # SRT server, {srt} (issue 11)
        from trio_core.srt.subsystem import SrtSubsystem
        srt = SrtSubsystem(config, app=s.app, placeholders=s.placeholders,
                           collector=lambda: s.collector("srt"), warnings=s.warnings)
        subsystems.append(srt)

    def relays() -> dict[str, RelayStats]:
        """Each running relay's counters by server name (the ``relay_*`` metrics)."""
        out: dict[str, RelayStats] = {}
        if rtmp is not None:
            out["rtmp"] = rtmp.relay_stats()
        if srt is not None and srt.server is not None:
            out["srt"] = srt.server.relay_stats()
        if s.forwarder is not None:
            out["webrtc"] = s.forwarder.relay_stats()
        return out

    # metrics, sessions, Prometheus, OpenAPI (issue 14): last, it documents every route
    subsystems.append(ObservabilitySubsystem(
        config, app=s.app, supervisor=s.supervisor, auth=s.auth, monitor=s.monitor,
        history=s.history, sessions=s.sessions, viewers=s.viewers, started_at=s.started_at,
        openapi_routes=s.openapi_routes, relays=relays,
        collectors=cluster_collectors(s)))
    return subsystems


async def run_restarting(
    subsystem: Subsystem, *, backoff: tuple[float, float] = RESTART_BACKOFF,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``subsystem`` until cancelled. A failure before it reported ready propagates (the
    server does not start); after that, a failure is logged and ``run`` is started again
    after ``backoff[0]`` seconds, doubling up to ``backoff[1]`` (back to the first wait once
    a run lasted longer than the largest). ``run`` returning normally ends it (nothing to
    serve)."""
    first, largest = backoff
    delay = first
    name = type(subsystem).__name__
    started = False
    while True:
        began = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                value = await nursery.start(subsystem.run)
                if not started:
                    started = True
                    task_status.started(value)
            return
        except Exception as exc:
            if not started:  # as ``nursery.start(subsystem.run)`` would raise it
                if isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
                    raise exc.exceptions[0] from None
                raise
            if trio.current_time() - began > largest:
                delay = first
            log.exception("%s failed; restarting it in %.1f s", name, delay)
        await trio.sleep(delay)
        delay = min(delay * 2, largest)


def demo_process_json() -> dict[str, Any]:
    """The demo process (test pattern + tone, nothing written): created when ``demo.enable``
    and the db is fresh (no db.json yet), so a deleted demo never comes back."""
    return {
        "id": DEMO_PROCESS_ID,
        "reference": "demo",
        "options": ["-loglevel", "level+info", "-threads", "1"],
        "input": [
            {"id": "video", "address": "testsrc2=size=640x360:rate=25",
             "options": ["-re", "-f", "lavfi"]},
            {"id": "audio", "address": "sine=frequency=440:sample_rate=48000",
             "options": ["-re", "-f", "lavfi"]},
        ],
        "output": [
            {"id": "null", "address": "-",
             "options": ["-map", "0:v", "-map", "1:a", "-f", "null"]},
        ],
        "webrtc": {"enabled": True},
        "autostart": True,
        "reconnect": True,
        "reconnect_delay_seconds": 5,
    }


async def ensure_demo(supervisor: Supervisor) -> None:
    """Add the demo process unless a process with its id exists (then leave it alone)."""
    if DEMO_PROCESS_ID in supervisor.ids():
        return
    try:
        await supervisor.add(ProcessConfig.from_json(demo_process_json()))
    except DuplicateProcess:
        pass
    except (ConfigError, ValueError) as exc:  # never keep the server from starting
        log.warning("demo process not created: %s", exc)
    else:
        log.info("demo process %r created (demo.enable)", DEMO_PROCESS_ID)


def http_limits(config: Config) -> ServerLimits:
    """The HTTP server's limits (:mod:`trio_core.httpd.server`) from ``api.*`` settings.

    Keep-alive connections are never closed after a number of requests (Core never does);
    the idle keep-alive timeout and the head timeout (slowloris) apply; a graceful stop
    finishes the requests in flight for at most 3 s.
    """
    return ServerLimits(max_connections=config["api.max_connections"],
                        idle_timeout=float(config["api.keepalive_timeout_sec"]),
                        graceful_timeout=3.0)


def listener_urls(listeners: Sequence[Any]) -> list[str]:
    """``http://host:port`` of each listening socket (IPv6 in brackets; wildcard kept)."""
    urls = []
    for sock in listeners:
        host, port = sock.getsockname()[:2]
        urls.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    return urls


async def serve(
    config: Config,
    *,
    subsystems: Callable[[Services], Sequence[Subsystem]] = build_subsystems,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    restart_backoff: tuple[float, float] = RESTART_BACKOFF,
    timings: EngineTimings | None = None,
    carry: ForwarderCarry | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the whole server until ``shutdown_trigger`` returns, ``shutdown()`` or cancellation.

    ``subsystems`` builds the subsystems from the services (default :func:`build_subsystems`).
    ``carry`` (given by :func:`trio_core.reload.serve_reloading`) keeps the WebRTC forwarder
    and its viewers from one ``serve`` to the next: on a reload request its Sources are
    held before the processes stop.
    Raises StartupError (PublicBindRefused, missing FFmpeg) before starting anything;
    ``StoreError`` from an unusable db; OSError when the port cannot be bound.
    """
    services = await build_services(config, timings=timings, carry=carry)
    supervisor = services.supervisor
    running_subsystems = list(subsystems(services))
    add_fallback_index(services.app)
    stop = services.lifecycle.stop

    async def wait_for_stop() -> None:
        if shutdown_trigger is None:
            await stop.wait()
            return
        async with trio.open_nursery() as waiters:
            async def trigger() -> None:
                await shutdown_trigger()
                waiters.cancel_scope.cancel()

            async def event() -> None:
                await stop.wait()
                waiters.cancel_scope.cancel()

            waiters.start_soon(trigger)
            waiters.start_soon(event)

    log.info("FFmpeg: %s; db: %s; storage: %s", services.ffmpeg,
             os.path.abspath(config["db.dir"]), services.storages.disk.root)
    async with trio.open_nursery() as outer:
        for subsystem in running_subsystems:
            await outer.start(lambda task_status, sub=subsystem: run_restarting(
                sub, backoff=restart_backoff, task_status=task_status))
        async with trio.open_nursery() as middle:
            await middle.start(supervisor.run)
            if config["demo.enable"] and services.fresh_db and services.cluster is None:
                await ensure_demo(supervisor)
            listeners = bind_listeners(config.api_host or "0.0.0.0", config.api_port)
            binds = listener_urls(listeners)  # http://0.0.0.0:P for wildcard binds (as bound)
            http = HttpServer(Dispatch(AsgiHandler(services.app), services.direct_routes),
                              http_limits(config))
            async with lifespan(services.app), trio.open_nursery() as inner:
                await inner.start(lambda task_status: http.serve(
                    listeners, shutdown_trigger=wait_for_stop, task_status=task_status))
                port = listeners[0].getsockname()[1]
                task_status.started(Running(url=binds[0], urls=binds, host=config.api_host,
                                            port=port, services=services,
                                            subsystems=running_subsystems))
            if carry is not None and services.lifecycle.reload_requested:
                carry.hold()  # the processes' Sources (and viewers) wait for the next serve
            log.info("HTTP server stopped; stopping processes")
            middle.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    log.info("server stopped")
