"""Server-wide v3 routes as Core v16.16 has them: skills, config, global metadata, log.

* ``GET /api/v3/skills``, ``GET /api/v3/skills/reload`` — the FFmpeg skills
  (:mod:`trio_core.ffmpeg.skills`; the first request waits for the startup probe).
* ``GET /api/v3/config`` -> ``{created_at, loaded_at, updated_at, config, overrides}``;
  ``PUT /api/v3/config`` (a partial or full version-3 document) -> 200 ``"OK"``, 400
  ``Invalid JSON`` / ``Invalid config version``, 409 ``{field: [messages]}``;
  ``GET /api/v3/config/reload`` -> 200 ``"OK"``, then the server restarts in-process with the
  stored config (:mod:`trio_core.config.v3_mapping`).
* ``GET /api/v3/metadata`` (all, ``null`` when empty), ``GET /api/v3/metadata/{key}`` (404
  ``Metadata not found``), ``PUT /api/v3/metadata/{key}`` (any JSON with a JSON Content-Type,
  as Core; ``null`` deletes; the value is echoed) — persisted with the process database.
* ``GET /api/v3/log[?format=raw]`` — the server's recent log lines (:mod:`trio_core.util.log_ring`).

All behind the default ``/api/v3`` guard. Handlers only touch in-memory state apart from the
config file write on PUT (small, synchronous) and the skills probe (in a worker thread).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trio_core.config.v3_mapping import ConfigRejected, CoreConfigStore
from trio_core.engine.supervisor import MetadataTooLarge
from trio_core.ffmpeg.skills import SkillsCache
from trio_core.http.errors import ApiError, bind_json, json_response, read_json
from trio_core.util.log_ring import LogRing
from trio_core.web import Blueprint, Response, request

if TYPE_CHECKING:
    from trio_core.engine.supervisor import Supervisor

MAX_METADATA_KEYS = 1000
MAX_METADATA_KEY_LENGTH = 256


def system_blueprint(
    supervisor: Supervisor, *, skills: SkillsCache, config_store: CoreConfigStore,
    log_ring: LogRing, request_reload: Callable[[], None],
) -> Blueprint:
    """The blueprint; ``request_reload`` restarts the server (called after the response)."""
    bp = Blueprint("system", __name__)

    @bp.get("/api/v3/skills")
    async def get_skills() -> Response:
        return json_response(await skills.get())

    @bp.get("/api/v3/skills/reload")
    async def reload_skills() -> Response:
        return json_response(await skills.reload())

    @bp.get("/api/v3/config")
    async def get_config() -> Response:
        return json_response(config_store.response())

    @bp.put("/api/v3/config")
    async def set_config() -> Response:
        body = await read_json()
        try:
            config_store.put(body)
        except ConfigRejected as exc:
            if exc.status == 409:
                return json_response(exc.errors, 409)
            raise ApiError(exc.status, exc.message, exc.details) from None
        except OSError as exc:
            raise ApiError(400, "Failed to store config",
                           f"cannot write {config_store.path}: {exc.strerror}") from None
        return json_response("OK")

    @bp.get("/api/v3/config/reload")
    async def reload_config() -> Response:
        response = json_response("OK")
        # the HTTP server finishes this response during the graceful stop the reload starts
        request_reload()
        return response

    @bp.get("/api/v3/metadata")
    async def get_all_metadata() -> Response:
        return json_response(supervisor.get_system_metadata())

    @bp.get("/api/v3/metadata/<path:key>")
    async def get_metadata(key: str) -> Response:
        try:
            return json_response(supervisor.get_system_metadata(key))
        except KeyError:
            raise ApiError(404, "Metadata not found", "unknown key") from None

    @bp.put("/api/v3/metadata/<path:key>")
    async def set_metadata(key: str) -> Response:
        if not key:
            raise ApiError(400, "Invalid key", "The key must not be of length 0")
        if len(key) > MAX_METADATA_KEY_LENGTH:
            raise ApiError(400, "Invalid key",
                           f"The key must not be longer than {MAX_METADATA_KEY_LENGTH} characters")
        value: Any = await bind_json()
        existing = supervisor.get_system_metadata() or {}
        if value is not None and key not in existing and len(existing) >= MAX_METADATA_KEYS:
            raise ApiError(400, "Invalid metadata",
                           f"at most {MAX_METADATA_KEYS} metadata keys can be stored")
        try:
            supervisor.set_system_metadata(key, value)
        except MetadataTooLarge as exc:
            raise ApiError(400, "Invalid metadata", str(exc)) from None
        return json_response(value)

    @bp.get("/api/v3/log")
    async def get_log() -> Response:
        fmt = request.args.get("format", "") or "console"
        if fmt == "raw":
            return json_response(log_ring.raw())
        return json_response(log_ring.console())

    return bp
