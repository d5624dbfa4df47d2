"""The server: supervisor + HTTP API (hypercorn) + subsystems in one trio nursery.

``await nursery.start(serve, config)`` checks the config (bind policy, FFmpeg), builds the
:class:`Supervisor` over ``Store(db.dir)``, the API app and the subsystems, starts them and
reports a :class:`Running` (URL, port, supervisor, app) through ``task_status``.

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

Reload (Core's ``GET /api/v3/config/reload``): ``ServerContext.request_reload()`` marks the
:class:`Running` as ``reload_requested`` and stops ``serve`` gracefully (processes are stopped
with their orders kept). :func:`serve_reloading` — what the CLI runs — then loads the config
again (``Running.config_file``: the file ``PUT /api/v3/config`` wrote) and serves again, in the
same nursery discipline: one ``serve`` at a time, nothing left running between them.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import hypercorn.config
import hypercorn.trio
import trio
from quart_trio import QuartTrio

from .api import Authenticator, add_fallback_index, create_app
from .api.system_routes import system_blueprint
from .config import Config, SettingError, is_loopback_host
from .core_config import CoreConfigStore
from .ffmpeg_binary import FFmpegNotFound, find_ffmpeg
from .log_ring import LogRing
from .skills import SkillsCache

log = logging.getLogger(__name__)

WEBRTC_SUBSYSTEM_MODULE = "trio_core.webrtc.subsystem"

# Subsystem modules, in start order (each exposes ``create_subsystem(config) -> Subsystem``),
# with the boolean setting that enables it (None = always on). A module that does not exist
# is skipped, so a package can be added without touching anything else here.
SUBSYSTEM_MODULES: tuple[tuple[str, str | None], ...] = (
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
    config_store: CoreConfigStore | None = None
    skills: SkillsCache | None = None
    request_reload: Callable[[], None] = field(default=lambda: None)


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
    reload_requested: bool = False
    config_file: str | None = None  # what a reload loads (set when the config was PUT)

    def shutdown(self) -> None:
        """Ask ``serve`` to stop gracefully (returns at once; ``serve`` returns when done)."""
        self._stop.set()

    def reload(self) -> None:
        """Ask ``serve`` to stop so that :func:`serve_reloading` starts it again."""
        self.reload_requested = True
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
    """The demo process (test pattern + tone, nothing written): created when ``demo.enable``."""
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
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the whole server until ``shutdown_trigger`` returns, ``shutdown()`` or cancellation.

    Raises StartupError (PublicBindRefused, missing FFmpeg) before starting anything;
    ``StoreError`` from an unusable db; OSError when the port cannot be bound.
    """
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

    try:
        config_store = CoreConfigStore(config)
    except (SettingError, OSError) as exc:
        raise StartupError(f"config: {exc}") from None
    supervisor = Supervisor(
        ffmpeg=ffmpeg,
        store=Store(db_dir),
        placeholders={"diskfs": disk_dir},
        log_lines=config["ffmpeg.log.max_lines"],
        log_history=config["ffmpeg.log.max_history"],
        max_processes=config["ffmpeg.max_processes"],
    )
    auth = Authenticator(
        enabled=config["api.auth.enable"],
        username=config["api.auth.username"],
        password=config["api.auth.password"],
        secret=config["api.auth.jwt.secret"],
        disable_localhost=config["api.auth.disable_localhost"],
        login_delay=config["api.auth.login_backoff_ms"] / 1000,
        login_max_delay=config["api.auth.login_backoff_max_ms"] / 1000,
    )
    app = create_app(supervisor, auth, instance=config_store.instance)
    skills = SkillsCache(ffmpeg)
    log_ring = LogRing(config["log.max_lines"])
    stop = trio.Event()
    reload_state: dict[str, bool] = {"requested": False}

    def request_reload() -> None:
        reload_state["requested"] = True
        stop.set()

    config_store.reload = request_reload
    app.register_blueprint(system_blueprint(
        supervisor, skills=skills, config_store=config_store, log_ring=log_ring,
        request_reload=request_reload,
    ))
    ctx = ServerContext(config=config, supervisor=supervisor, app=app, auth=auth,
                        config_store=config_store, skills=skills, request_reload=request_reload)
    if subsystems is None:
        subsystems = default_subsystems(config)
    for subsystem in subsystems:
        subsystem.install(ctx)
    add_fallback_index(app)
    hc = hypercorn_config(config)

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

    log_ring.install()
    try:
        await _serve_all(config, subsystems, supervisor, skills, app, hc, ctx, stop,
                         wait_for_stop, reload_state, config_store, task_status)
    finally:
        log_ring.uninstall()


async def _serve_all(
    config: Config, subsystems: Sequence[Subsystem], supervisor: Any, skills: SkillsCache,
    app: QuartTrio, hc: hypercorn.config.Config, ctx: ServerContext, stop: trio.Event,
    wait_for_stop: Callable[[], Awaitable[None]], reload_state: dict[str, bool],
    config_store: CoreConfigStore, task_status: trio.TaskStatus[Running],
) -> None:
    log.info("FFmpeg: %s; db: %s; storage: %s", skills.binary, config["db.dir"],
             config["storage.disk.dir"])
    running: Running | None = None
    async with trio.open_nursery() as outer:
        for subsystem in subsystems:
            await outer.start(subsystem.run)
        async with trio.open_nursery() as middle:
            await middle.start(supervisor.run)
            if config["demo.enable"]:
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
    if running is not None and (reload_state["requested"] or running.reload_requested):
        running.reload_requested = True
        running.config_file = config_store.path if os.path.isfile(config_store.path) else None
    log.info("server stopped")


async def serve_reloading(
    config: Config,
    *,
    load: Callable[[str | None], Config],
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    on_running: Callable[[Running], None] | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``serve`` again and again while reloads are requested (Core's config reload).

    ``load(config_file)`` builds the next config (the CLI passes
    :func:`trio_core.core_config.load`); when it fails the previous config is served again.
    An ephemeral API port (0) is kept across reloads. ``task_status`` reports the first
    :class:`Running`; ``on_running`` is called with every one. Returns when a ``serve``
    ends without a reload request; startup errors of the first ``serve`` propagate, those of a
    reloaded config make it serve the previous config again (once).
    """
    first = True
    fallback: Config | None = None  # the config that served before a reload
    while True:
        started = False
        try:
            async with trio.open_nursery() as nursery:
                running: Running = await nursery.start(
                    partial(serve, config, shutdown_trigger=shutdown_trigger)
                )
                started = True
                if on_running is not None:
                    on_running(running)
                if first:
                    task_status.started(running)
                    first = False
        except Exception as exc:  # re-raised unless a reloaded config failed to start
            if started or fallback is None:
                raise
            log.error("reload: the new configuration does not start (%s); serving the "
                      "previous one", exc)
            config, fallback = fallback, None
            continue
        if not running.reload_requested:
            return
        log.info("reloading the configuration (%s)", running.config_file or "no config file")
        try:
            new_config = load(running.config_file)
            if new_config["api.address"] == config["api.address"] and config.api_port == 0:
                host = running.host
                shown = f"[{host}]" if ":" in host else host
                new_config = new_config.replace(**{"api.address": f"{shown}:{running.port}"})
        except SettingError as exc:
            log.error("reload: %s; serving the previous configuration", exc)
            new_config = config
        fallback = config
        config = new_config
