"""The server: supervisor + HTTP API (hypercorn) + subsystems in one trio nursery.

``await nursery.start(serve, config)`` checks the config (bind policy, FFmpeg), ends the
FFmpegs a crashed previous instance left running (pid records in ``db.dir``, see
:mod:`trio_core.pidrecords`) before it starts anything, builds the :class:`Supervisor` over
``Store(db.dir)``, the API app and the subsystems, starts them and reports a :class:`Running`
(URL, port, supervisor, app) through ``task_status``. With ``demo.enable`` the demo process is
added only when the db is fresh (no ``db.json`` yet), so a deleted demo stays deleted.

Shutdown order, whether triggered by ``Running.shutdown()``, ``shutdown_trigger`` returning
(the CLI passes SIGINT/SIGTERM) or by cancellation: hypercorn stops accepting and finishes
requests (graceful, bounded), then the supervisor is cancelled (stops every FFmpeg, orders
unchanged, so they come back on the next start), then the subsystems are cancelled. When
``serve`` returns nothing it started is left running.

Subsystem seam (WebRTC plugs in here): a :class:`Subsystem` gets ``install(ctx)`` before
anything runs — register supervisor hooks (``ctx.supervisor.add_hook``), blueprints
(``ctx.app.register_blueprint``) and auth alternatives (``ctx.auth.require_auth``) — then
``run(task_status=...)`` is started in the server nursery *before* the supervisor (so hooks
can use it when processes autostart) and cancelled *after* the supervisor has stopped.
:func:`default_subsystems` builds the list from the config; a module
``trio_core.webrtc.subsystem`` exposing ``create_subsystem(config) -> Subsystem`` is picked up
automatically when ``webrtc.enable`` is true; the other subsystems (storage, RTMP, SRT,
observability) are listed in :data:`SUBSYSTEM_MODULES` the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import hypercorn.config
import hypercorn.trio
import trio
from quart_trio import QuartTrio

from .api import Authenticator, add_fallback_index, create_app
from .config import Config, is_loopback_host
from .ffmpeg_binary import FFmpegNotFound, find_ffmpeg
from .process import EngineTimings

log = logging.getLogger(__name__)

WEBRTC_SUBSYSTEM_MODULE = "trio_core.webrtc.subsystem"

# Subsystem modules, in start order (each exposes ``create_subsystem(config) -> Subsystem``),
# with the boolean setting that enables it (None = always on). A module that does not exist
# is skipped, so a package can be added without touching anything else here.
SUBSYSTEM_MODULES: tuple[tuple[str, str | None], ...] = (
    # Core's server-wide API: skills, config (+ reload), global metadata, log (issue 9)
    ("trio_core.api.core_subsystem", None),
    # storage: memfs, disk mount, /api/v3/fs, cleanup rules (issue 10)
    ("trio_core.storage.subsystem", None),
    # WebRTC / WHEP playback
    (WEBRTC_SUBSYSTEM_MODULE, "webrtc.enable"),
    # RTMP server (issue 11)
    ("trio_core.rtmp.subsystem", "rtmp.enable"),
    # SRT server (issue 11)
    ("trio_core.srt.subsystem", "srt.enable"),
    # metrics, sessions, Prometheus, OpenAPI (issue 14)
    ("trio_core.observability.subsystem", None),
)
DEMO_PROCESS_ID = "demo"


class StartupError(RuntimeError):
    """The server refuses to start (bad bind policy, no FFmpeg, …); the CLI exits with 2."""


class PublicBindRefused(StartupError):
    """Non-loopback bind with auth disabled and without ``api.allow_public_bind``."""


@dataclass
class ServerContext:
    """What subsystems get in ``install``."""

    config: Config
    supervisor: Any  # trio_core.supervisor.Supervisor
    app: QuartTrio
    auth: Authenticator
    # set() stops ``serve`` gracefully; request_reload() also marks the stop as a reload
    # (Core's GET /api/v3/config/reload), which :func:`trio_core.reload.serve_reloading` acts on
    stop: trio.Event = field(default_factory=trio.Event)
    reload_requested: bool = False
    reload_config_file: str | None = None  # the config file a reload loads

    def request_reload(self, config_file: str | None = None) -> None:
        """Stop ``serve`` and ask :func:`trio_core.reload.serve_reloading` to start it again."""
        self.reload_requested = True
        self.reload_config_file = config_file
        self.stop.set()


class Subsystem(Protocol):
    """A part of the server living beside the supervisor (e.g. WebRTC)."""

    def install(self, ctx: ServerContext) -> None:
        """Register hooks/blueprints; called once, before anything runs. Must not block."""

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; call ``task_status.started()`` when ready."""


@dataclass
class Running:
    """Handed out by ``serve`` through ``task_status`` once the API accepts connections."""

    url: str
    urls: list[str]
    host: str
    port: int
    supervisor: Any
    app: QuartTrio
    context: ServerContext
    _stop: trio.Event = field(default_factory=trio.Event, repr=False)

    def shutdown(self) -> None:
        """Ask ``serve`` to stop gracefully (returns at once; ``serve`` returns when done)."""
        self._stop.set()


def check_bind(config: Config) -> None:
    """Raise PublicBindRefused when the API would listen beyond loopback without auth.

    Allowed: a loopback host (127.0.0.0/8, ::1, ``localhost``), or ``api.auth.enable``, or the
    explicit opt-in ``api.allow_public_bind``. An empty host means all interfaces.
    """
    if config["api.auth.enable"] or config["api.allow_public_bind"]:
        return
    host = config.api_host
    if not is_loopback_host(host):
        shown = host or "all interfaces"
        raise PublicBindRefused(
            f"refusing to listen on {config['api.address']} ({shown}) without authentication: "
            "set api.auth.enable with api.auth.username/api.auth.password "
            "(CORE_API_AUTH_ENABLE, CORE_API_AUTH_USERNAME, CORE_API_AUTH_PASSWORD), "
            "or opt in with api.allow_public_bind=true (CORE_API_ALLOW_PUBLIC_BIND)"
        )


def default_subsystems(config: Config) -> list[Subsystem]:
    """Subsystems enabled by ``config``, in :data:`SUBSYSTEM_MODULES` order (missing modules
    and disabled ones are skipped)."""
    subsystems: list[Subsystem] = []
    for module_name, enable_key in SUBSYSTEM_MODULES:
        try:
            if importlib.util.find_spec(module_name) is None:
                continue
        except ModuleNotFoundError:  # its parent package does not exist (yet)
            continue
        if enable_key is not None and not config[enable_key]:
            continue
        module = importlib.import_module(module_name)
        subsystems.append(module.create_subsystem(config))
    return subsystems


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


async def ensure_demo(supervisor: Any) -> None:
    """Add the demo process unless a process with its id exists (then leave it alone)."""
    from .model import ConfigError, ProcessConfig
    from .supervisor import DuplicateProcess

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


def hypercorn_config(config: Config) -> hypercorn.config.Config:
    """Hypercorn settings for ``api.address`` (empty host -> 0.0.0.0)."""
    host, port = config.api_host, config.api_port
    if not host:
        host = "0.0.0.0"
    hc = hypercorn.config.Config()
    hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 3.0
    hc.shutdown_timeout = 3.0
    return hc


def _display_url(bind: str) -> str:
    # hypercorn reports http://0.0.0.0:P for wildcard binds; keep it (it is what we bind)
    return bind


async def serve(
    config: Config,
    *,
    subsystems: Sequence[Subsystem] | None = None,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    timings: EngineTimings | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the whole server until ``shutdown_trigger`` returns, ``shutdown()`` or cancellation.

    Raises StartupError (PublicBindRefused, missing FFmpeg) before starting anything;
    ``StoreError`` from an unusable db; OSError when the port cannot be bound.
    """
    from .pidrecords import PidRecords
    from .store import Store
    from .supervisor import Supervisor

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

    # before anything starts: end FFmpegs a crashed previous instance left running
    pid_records = PidRecords(db_dir)
    await pid_records.end_leftovers()
    store = Store(db_dir)
    fresh_db = not store.path.exists()
    supervisor = Supervisor(
        ffmpeg=ffmpeg,
        store=store,
        pid_records=pid_records,
        placeholders={"diskfs": disk_dir},
        log_lines=config["ffmpeg.log.max_lines"],
        log_history=config["ffmpeg.log.max_history"],
        max_processes=config["ffmpeg.max_processes"],
        timings=timings,
    )
    auth = Authenticator(
        enabled=config["api.auth.enable"],
        username=config["api.auth.username"],
        password=config["api.auth.password"],
        secret=config["api.auth.jwt.secret"],
    )
    app = create_app(supervisor, auth)
    ctx = ServerContext(config=config, supervisor=supervisor, app=app, auth=auth)
    if subsystems is None:
        subsystems = default_subsystems(config)
    for subsystem in subsystems:
        subsystem.install(ctx)
    add_fallback_index(app)
    hc = hypercorn_config(config)
    stop = ctx.stop

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

    log.info("FFmpeg: %s; db: %s; storage: %s", ffmpeg, db_dir, disk_dir)
    async with trio.open_nursery() as outer:
        for subsystem in subsystems:
            await outer.start(subsystem.run)
        async with trio.open_nursery() as middle:
            await middle.start(supervisor.run)
            if config["demo.enable"] and fresh_db:
                await ensure_demo(supervisor)
            async with trio.open_nursery() as inner:
                binds: list[str] = await inner.start(
                    lambda task_status: hypercorn.trio.serve(
                        app, hc, shutdown_trigger=wait_for_stop, task_status=task_status
                    )
                )
                url = _display_url(binds[0])
                port = int(url.rsplit(":", 1)[1])
                running = Running(
                    url=url, urls=binds, host=config.api_host, port=port,
                    supervisor=supervisor, app=app, context=ctx, _stop=stop,
                )
                task_status.started(running)
            log.info("HTTP server stopped; stopping processes")
            middle.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    log.info("server stopped")
