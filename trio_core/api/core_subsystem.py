"""Core's server-wide API as a server subsystem: identity, skills, config, metadata, log.

``create_subsystem(config)`` (listed in ``trio_core.server.SUBSYSTEM_MODULES``) returns a
:class:`CoreApiSubsystem`. ``install(ctx)``:

* builds the :class:`~trio_core.core_config.CoreConfigStore` (Core-layout config, instance
  identity from ``<db.dir>/instance.json``) and puts the identity into ``GET /api``;
* applies the login settings to ``ctx.auth`` (``api.auth.disable_localhost``, the login
  backoff ``api.auth.login_backoff_ms`` / ``api.auth.login_backoff_max_ms``);
* registers :func:`~trio_core.api.system_routes.system_blueprint` (skills, config + reload,
  global metadata, log); a reload calls ``ctx.request_reload`` with the stored config file.

``run()`` attaches the log ring (``log.max_lines`` records) to the root logger while the server
runs and detaches it when cancelled; it owns no other task. The FFmpeg skills are probed on
first use through the one spawn path (:class:`~trio_core.ffmpeg.skills.SkillsCache`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import trio

from ..config import Config, SettingError
from ..core_config import CoreConfigStore
from ..ffmpeg.binary import FFmpegNotFound, find_ffmpeg
from ..ffmpeg.skills import SkillsCache
from ..log_ring import LogRing
from .app import APP_KEY
from .system_routes import system_blueprint

if TYPE_CHECKING:
    from ..server import ServerContext


class CoreApiSubsystem:
    """See the module docstring."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.log_ring = LogRing(config["log.max_lines"])
        self.store: CoreConfigStore | None = None
        self.skills: SkillsCache | None = None

    def install(self, ctx: ServerContext) -> None:
        from ..server import StartupError

        try:
            self.store = CoreConfigStore(self.config)
        except (SettingError, OSError) as exc:
            raise StartupError(f"config: {exc}") from None
        try:
            binary = find_ffmpeg(self.config["ffmpeg.binary"])
        except FFmpegNotFound as exc:  # serve() refuses to start before this anyway
            raise StartupError(f"ffmpeg.binary: {exc}") from None
        self.skills = SkillsCache(binary, record=ctx.supervisor.pid_records)
        ctx.app.extensions[APP_KEY]["instance"] = self.store.instance
        auth = ctx.auth
        auth.disable_localhost = self.config["api.auth.disable_localhost"]
        auth.throttle.max_delay = self.config["api.auth.login_backoff_max_ms"] / 1000
        auth.login_delay = self.config["api.auth.login_backoff_ms"] / 1000
        store = self.store

        def request_reload() -> None:
            path = store.path if os.path.isfile(store.path) else None
            ctx.request_reload(path)

        store.reload = request_reload
        ctx.app.register_blueprint(system_blueprint(
            ctx.supervisor, skills=self.skills, config_store=store, log_ring=self.log_ring,
            request_reload=request_reload,
        ))

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.log_ring.install()
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.log_ring.uninstall()


def create_subsystem(config: Config) -> CoreApiSubsystem:
    """The subsystem for ``config`` (see ``trio_core.server.SUBSYSTEM_MODULES``)."""
    return CoreApiSubsystem(config)
