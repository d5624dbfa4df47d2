"""Core's server-wide API as a server subsystem: skills, config (+ reload), metadata, log.

:class:`CoreApiSubsystem` gets what it needs from the composition root
(:mod:`trio_core.server`) in its constructor: the app to register on, the supervisor (global
metadata), the FFmpeg skills cache, the Core-layout config store (instance identity from
``<db.dir>/instance.json``, already shown in ``GET /api``), the log ring and the function that
asks the server to reload. The constructor registers
:func:`~trio_core.api.system_routes.system_blueprint` (skills, config + reload, global
metadata, log); a reload request restarts the server with the stored config file.

``run()`` attaches the log ring to the root logger while the server runs and detaches it
when cancelled; it owns no other task. The FFmpeg skills are probed on first use through
the one spawn path (:class:`~trio_core.ffmpeg.skills.SkillsCache`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from trio_core.api.system_routes import system_blueprint
from trio_core.config.v3_mapping import CoreConfigStore
from trio_core.ffmpeg.skills import SkillsCache
from trio_core.util.log_ring import LogRing
from trio_core.web import App

if TYPE_CHECKING:
    from trio_core.engine.supervisor import Supervisor

__all__ = ["CoreApiSubsystem"]


class CoreApiSubsystem:
    """See the module docstring."""

    def __init__(self, app: App, supervisor: Supervisor, *, skills: SkillsCache,
                 config_store: CoreConfigStore, log_ring: LogRing,
                 request_reload: Callable[[str | None], None]) -> None:
        self.log_ring = log_ring
        self.store = config_store
        self.skills = skills

        def reload() -> None:
            path = config_store.path if os.path.isfile(config_store.path) else None
            request_reload(path)

        config_store.reload = reload
        app.register_blueprint(system_blueprint(
            supervisor, skills=skills, config_store=config_store, log_ring=log_ring,
            request_reload=reload,
        ))

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.log_ring.install()
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.log_ring.uninstall()
