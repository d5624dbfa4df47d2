"""``/api/v3/process`` routes (datarhei Core v3 shapes) over a :class:`Supervisor`.

Status codes: 200 on success (POST/PUT answer the stored config, DELETE and command answer
``"OK"``); 400 invalid JSON / invalid config (details name the field) / unknown command;
404 unknown process id (also for ``command``, where datarhei answers 400); 409 duplicate id
(datarhei: 400). Errors use ``{code, message, details}``.

Handlers only call the supervisor; a cancelled request (client gone, server shutdown) cancels
the awaited supervisor call, whose own contract decides what is left behind.
"""

from __future__ import annotations

import fnmatch
import uuid
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, request

from ..model import ConfigError, ProcessConfig
from ..supervisor import DuplicateProcess, ProcessNotFound
from .errors import ApiError, json_response, read_json

if TYPE_CHECKING:
    from ..supervisor import Process, Supervisor

COMMANDS = ("start", "stop", "restart", "reload")
FILTERS = ("config", "state", "report", "metadata")


def config_error(exc: Exception) -> ApiError:
    """400 for a ConfigError: details ``"<field>: <message>"``."""
    field = getattr(exc, "field", "")
    message = getattr(exc, "message", None) or str(exc)
    detail = f"{field}: {message}" if field else str(message)
    return ApiError(400, "Invalid process config", detail)


def not_found(process_id: str) -> ApiError:
    return ApiError(404, "Unknown process ID", f"no process with id {process_id!r}")


def _parse_filters(raw: str | None) -> set[str]:
    if not raw:
        return set(FILTERS)
    wanted = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = wanted - set(FILTERS)
    if unknown:
        raise ApiError(400, "Invalid filter", f"unknown filter(s) {sorted(unknown)}; known: {', '.join(FILTERS)}")
    return wanted


def process_json(supervisor: Supervisor, proc: Process, filters: set[str]) -> dict[str, Any]:
    """The datarhei ``Process`` object with the requested parts."""
    config = proc.config.to_json()
    out: dict[str, Any] = {
        "id": proc.id,
        "type": config.get("type", "ffmpeg"),
        "reference": config.get("reference", ""),
        "created_at": int(proc.created_at),
        "updated_at": int(proc.updated_at),
    }
    if "config" in filters:
        out["config"] = config
    if "state" in filters:
        out["state"] = proc.state_json()
    if "report" in filters:
        out["report"] = proc.report_json()
    if "metadata" in filters:
        metadata = supervisor.get_metadata(proc.id, None)
        if metadata is not None:
            out["metadata"] = metadata
    return out


def _config_from(body: Any) -> ProcessConfig:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid process config", "expected a JSON object")
    try:
        return ProcessConfig.from_json(body)
    except ConfigError as exc:
        raise config_error(exc) from None


def process_blueprint(supervisor: Supervisor) -> Blueprint:
    """The process routes bound to ``supervisor``."""
    bp = Blueprint("process", __name__, url_prefix="/api/v3/process")

    def lookup(process_id: str) -> Process:
        try:
            return supervisor.get(process_id)
        except ProcessNotFound:
            raise not_found(process_id) from None

    @bp.get("")
    async def list_processes() -> Response:
        filters = _parse_filters(request.args.get("filter"))
        reference = request.args.get("reference", "")
        ids = {i.strip() for i in request.args.get("id", "").split(",") if i.strip()}
        idpattern = request.args.get("idpattern", "")
        refpattern = request.args.get("refpattern", "")
        result = []
        for process_id in supervisor.ids():
            try:
                proc = supervisor.get(process_id)
            except ProcessNotFound:
                continue  # deleted meanwhile
            ref = proc.config.to_json().get("reference", "")
            if ids and process_id not in ids:
                continue
            if reference and ref != reference:
                continue
            if idpattern and not fnmatch.fnmatchcase(process_id, idpattern):
                continue
            if refpattern and not fnmatch.fnmatchcase(ref, refpattern):
                continue
            result.append(process_json(supervisor, proc, filters))
        return json_response(result)

    @bp.post("")
    async def add_process() -> Response:
        body = await read_json()
        if isinstance(body, dict) and "id" not in body:
            body = {**body, "id": uuid.uuid4().hex}
        cfg = _config_from(body)
        try:
            proc = await supervisor.add(cfg)
        except ConfigError as exc:
            raise config_error(exc) from None
        except DuplicateProcess:
            raise ApiError(409, "Process already exists", f"process id {cfg.id!r} is already in use") from None
        except ValueError as exc:
            raise ApiError(400, "Invalid process config", str(exc)) from None
        return json_response(proc.config.to_json())

    @bp.get("/<process_id>")
    async def get_process(process_id: str) -> Response:
        filters = _parse_filters(request.args.get("filter"))
        return json_response(process_json(supervisor, lookup(process_id), filters))

    @bp.put("/<process_id>")
    async def update_process(process_id: str) -> Response:
        current = lookup(process_id)
        body = await read_json()
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid process config", "expected a JSON object")
        merged = {**current.config.to_json(), **body}
        cfg = _config_from(merged)
        try:
            proc = await supervisor.update(process_id, cfg)
        except ConfigError as exc:
            raise config_error(exc) from None
        except DuplicateProcess:
            raise ApiError(409, "Process already exists", f"process id {cfg.id!r} is already in use") from None
        except ProcessNotFound:
            raise not_found(process_id) from None
        except ValueError as exc:
            raise ApiError(400, "Process can't be updated", str(exc)) from None
        return json_response(proc.config.to_json())

    @bp.delete("/<process_id>")
    async def delete_process(process_id: str) -> Response:
        lookup(process_id)
        try:
            await supervisor.delete(process_id)
        except ProcessNotFound:
            raise not_found(process_id) from None
        return json_response("OK")

    @bp.put("/<process_id>/command")
    async def command(process_id: str) -> Response:
        lookup(process_id)
        body = await read_json()
        cmd = body.get("command") if isinstance(body, dict) else None
        if cmd not in COMMANDS:
            raise ApiError(400, "Unknown command provided", f"Known commands are: {', '.join(COMMANDS)}")
        try:
            await supervisor.command(process_id, cmd)
        except ProcessNotFound:
            raise not_found(process_id) from None
        except ValueError as exc:
            raise ApiError(400, "Command failed", str(exc)) from None
        return json_response("OK")

    @bp.get("/<process_id>/config")
    async def get_config(process_id: str) -> Response:
        return json_response(lookup(process_id).config.to_json())

    @bp.get("/<process_id>/state")
    async def get_state(process_id: str) -> Response:
        return json_response(lookup(process_id).state_json())

    @bp.get("/<process_id>/report")
    async def get_report(process_id: str) -> Response:
        return json_response(lookup(process_id).report_json())

    @bp.get("/<process_id>/metadata")
    async def get_all_metadata(process_id: str) -> Response:
        lookup(process_id)
        return json_response(supervisor.get_metadata(process_id, None))

    @bp.get("/<process_id>/metadata/<key>")
    async def get_metadata(process_id: str, key: str) -> Response:
        lookup(process_id)
        try:
            value = supervisor.get_metadata(process_id, key)
        except ProcessNotFound:
            raise not_found(process_id) from None
        except KeyError:
            value = None
        if value is None:
            raise ApiError(404, "Unknown process ID", "unknown key")
        return json_response(value)

    @bp.put("/<process_id>/metadata/<key>")
    async def put_metadata(process_id: str, key: str) -> Response:
        lookup(process_id)
        if not key.strip():
            raise ApiError(400, "Invalid key", "the key must not be empty")
        value = await read_json()
        try:
            supervisor.set_metadata(process_id, key, value)
        except ProcessNotFound:
            raise not_found(process_id) from None
        return json_response(value)

    return bp
