"""``/api/v3/process`` routes over a :class:`Supervisor`, with Core v16.16's status codes.

What Core does, and so do we (``http/handler/api/process.go`` of datarhei/core):

* bodies are bound like Core's ``ShouldBindJSON``: an empty body, a Content-Type that is not
  ``application/json``, malformed JSON or a value of the wrong type (negative or fractional
  numbers for unsigned fields included) -> 400 "Invalid JSON" with details naming the field;
  unknown fields are ignored;
* ``POST``: defaults ``id`` (a fresh 22-character shortuuid), ``type`` "ffmpeg", ``autostart``
  true; ``type`` "" -> 400 "Unsupported process type"; no input or no output -> 400 "At least
  one input and one output need to be defined"; an invalid config, a duplicate id or a refused
  reference -> 400 "Invalid process config". Answers the stored config.
* ``PUT /{id}``: unknown id -> 404 "Process not found"; the body is decoded *onto* the current
  config (:func:`~trio_core.engine.process_config.decode_onto`); an invalid result, ``"id": ""`` or a new id
  that is already used -> 400 "Process can't be updated".
* ``PUT /{id}/command``: ``command`` missing -> 400 "Invalid JSON", not one of start, stop,
  restart, reload -> 400 "Unknown command provided", unknown id -> 400 "Command failed".
* ``GET``/``DELETE`` of an unknown id -> 404 "Unknown process ID".
* list filters: ``filter`` (comma list; unknown names ignored, so ``filter=x`` gives only the
  base fields), ``idpattern``/``refpattern`` (gobwas globs, intersected; an invalid pattern
  matches nothing), ``reference`` (exact; when given, ``id`` is ignored), ``id`` (comma list).
* ``GET /{id}/probe``: always 200 with ``{"streams", "log"}`` (an unknown id gives no streams
  and the log line "Unknown process ID (<id>)").
* Process ids are checked against :data:`~trio_core.engine.process_config.ID_CHARSET` on POST/PUT (400 naming
  ``id``); stored processes with ids from before load and are listed; they can be renamed with
  ``PUT`` and deleted (``DELETE`` also accepts an id containing ``/``).

Errors use ``{code, message, details}``. Handlers only call the supervisor; a cancelled request
(client gone, server shutdown) cancels the awaited call, whose own contract decides what is
left behind (a cancelled probe kills its FFmpeg).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

from trio_core.engine.process_config import (
    ConfigError,
    ConfigTypeError,
    ProcessConfig,
    decode_onto,
    generate_id,
)
from trio_core.engine.supervisor import DuplicateProcess, MetadataTooLarge, ProcessNotFound
from trio_core.ffmpeg.probe import run_probe
from trio_core.http.auth import Authenticator
from trio_core.http.errors import ApiError, bind_json, json_response
from trio_core.http.go_json import (
    JSON_CONTENT_TYPE,
    JSON_CONTENT_TYPE_BYTES,
    PrerenderCache,
    core_dumps_bytes,
    core_json_response,
)
from trio_core.util.glob import GlobError, glob_match
from trio_core.web import Blueprint, Response, request

if TYPE_CHECKING:
    from trio_core.engine.supervisor import Process, Supervisor
    from trio_core.httpd.server import Channel

COMMANDS = ("start", "stop", "restart", "reload")
FILTERS = ("config", "state", "report", "metadata")
MAX_CONCURRENT_PROBES = 4
#: the list yields to other tasks every this many processes (every process with a pattern)
LIST_CHECKPOINT_EVERY = 64


def config_error(exc: ConfigError, message: str) -> ApiError:
    """400 for a ConfigError (a type error is "Invalid JSON"): details ``"<field>: <message>"``."""
    if isinstance(exc, ConfigTypeError):
        message = "Invalid JSON"
    detail = f"{exc.field}: {exc.message}" if exc.field else exc.message
    return ApiError(400, message, detail)


def not_found(process_id: str) -> ApiError:
    return ApiError(404, "Unknown process ID", "unknown process")


def _parse_filters(raw: str | None) -> set[str]:
    """Core's ``getProcess`` filter: empty -> everything; else the known names listed."""
    wanted = [part for part in (raw or "").split(",") if part]
    if not wanted:
        return set(FILTERS)
    return {part for part in wanted if part in FILTERS}


class Views:
    """Prerendered JSON of the parts of a process view that change rarely: the config (per
    config object; an update replaces it), the report and the state's progress (the engine
    builds each once per change and shares it). A response then serialises each once per
    change instead of once per request. Keyed by process id, checked by object identity."""

    def __init__(self) -> None:
        self.config = PrerenderCache()
        self.progress = PrerenderCache()
        self.report = PrerenderCache()


def _config_json(config: ProcessConfig) -> dict[str, Any]:
    return config.to_json()


def process_json(supervisor: Supervisor, proc: Process, filters: set[str],
                 views: Views | None = None) -> dict[str, Any]:
    """Core's ``Process`` object with the requested parts (``views``: prerendered parts)."""
    out: dict[str, Any] = {
        "id": proc.id,
        "type": "ffmpeg",
        "reference": proc.config.reference,
        "created_at": int(proc.created_at),
        "updated_at": int(proc.updated_at),
    }
    if "config" in filters:
        out["config"] = (proc.config.to_json() if views is None
                         else views.config.get(proc.id, proc.config, _config_json))
    if "state" in filters:
        state = out["state"] = proc.state_json()
        if views is not None:
            state["progress"] = views.progress.get(proc.id, state["progress"])
    if "report" in filters:
        report = proc.report_json()
        out["report"] = report if views is None else views.report.get(proc.id, report)
    if "metadata" in filters:
        out["metadata"] = supervisor.get_metadata(proc.id, None)
    return out


def _required(merged: dict[str, Any], key: str) -> None:
    """Core's validator: ``input``/``output`` must be present (an empty list passes)."""
    if merged.get(key) is None:
        name = key.capitalize()
        raise ApiError(400, "Invalid JSON", f"Key: 'ProcessConfig.{name}' Error:Field validation "
                                            f"for '{name}' failed on the 'required' tag")


def _decode(base: dict[str, Any], body: Any) -> dict[str, Any]:
    """``body`` onto ``base`` as Core binds it; 400 "Invalid JSON" for type errors."""
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON", "expect type 'object' for the process config")
    try:
        merged = decode_onto(base, body)
    except ConfigTypeError as exc:
        raise config_error(exc, "Invalid JSON") from None
    if merged.get("type") not in ("ffmpeg", ""):
        raise ApiError(400, "Invalid JSON", "type: must be 'ffmpeg'")
    _required(merged, "input")
    _required(merged, "output")
    return merged


def _validate(merged: dict[str, Any], message: str) -> ProcessConfig:
    try:
        return ProcessConfig.from_json(merged)
    except ConfigError as exc:
        raise config_error(exc, message) from None


def process_blueprint(supervisor: Supervisor, views: Views | None = None) -> Blueprint:
    """The process routes bound to ``supervisor`` (``views``: the prerendered parts, shared
    with :class:`ProcessPoll`; a new one when None)."""
    bp = Blueprint("process", __name__, url_prefix="/api/v3/process")
    probes = trio.CapacityLimiter(MAX_CONCURRENT_PROBES)
    views = views if views is not None else Views()

    def lookup(process_id: str) -> Process:
        try:
            return supervisor.get(process_id)
        except ProcessNotFound:
            raise not_found(process_id) from None

    @bp.get("")
    async def list_processes() -> Response:
        return Response(await list_body(supervisor, views, request.args),
                        content_type=JSON_CONTENT_TYPE)

    @bp.post("")
    async def add_process() -> Response:
        body = await bind_json()
        merged = _decode({"id": generate_id(), "type": "ffmpeg", "autostart": True}, body)
        if merged.get("type") != "ffmpeg":
            raise ApiError(400, "Unsupported process type", "Supported process types are: ffmpeg")
        if not merged["input"] or not merged["output"]:
            raise ApiError(400, "At least one input and one output need to be defined")
        cfg = _validate(merged, "Invalid process config")
        try:
            proc = await supervisor.add(cfg)
        except ConfigError as exc:
            raise config_error(exc, "Invalid process config") from None
        except DuplicateProcess:
            raise ApiError(400, "Invalid process config", "process already exists") from None
        except ValueError as exc:
            raise ApiError(400, "Invalid process config", str(exc)) from None
        return json_response(proc.config.to_json())

    @bp.get("/<process_id>")
    async def get_process(process_id: str) -> Response:
        filters = _parse_filters(request.args.get("filter"))
        return core_json_response(process_json(supervisor, lookup(process_id), filters,
                                               views), marked=("state",))

    @bp.put("/<process_id>")
    async def update_process(process_id: str) -> Response:
        try:
            current = supervisor.get(process_id)
        except ProcessNotFound:
            raise ApiError(404, "Process not found", process_id) from None
        body = await bind_json()
        merged = _decode(current.config.to_json(), body)
        cfg = _validate(merged, "Process can't be updated")
        try:
            proc = await supervisor.update(process_id, cfg)
        except ConfigError as exc:
            raise config_error(exc, "Process can't be updated") from None
        except DuplicateProcess:
            raise ApiError(400, "Process can't be updated", "process already exists") from None
        except ProcessNotFound:
            raise ApiError(404, "Process not found", process_id) from None
        except ValueError as exc:
            raise ApiError(400, "Process can't be updated", str(exc)) from None
        return json_response(proc.config.to_json())

    @bp.delete("/<process_id>")
    @bp.delete("/<path:process_id>")
    async def delete_process(process_id: str) -> Response:
        lookup(process_id)
        try:
            await supervisor.delete(process_id)
        except ProcessNotFound:
            raise not_found(process_id) from None
        return json_response("OK")

    @bp.put("/<process_id>/command")
    async def command(process_id: str) -> Response:
        cmd = await read_command()
        try:
            await supervisor.command(process_id, cmd)
        except ProcessNotFound:
            raise ApiError(400, "Command failed", "unknown process") from None
        except ValueError as exc:
            raise ApiError(400, "Command failed", str(exc)) from None
        return json_response("OK")

    @bp.get("/<process_id>/config")
    async def get_config(process_id: str) -> Response:
        return json_response(lookup(process_id).config.to_json())

    @bp.get("/<process_id>/state")
    async def get_state(process_id: str) -> Response:
        return Response(state_body(lookup(process_id), views), content_type=JSON_CONTENT_TYPE)

    @bp.get("/<process_id>/report")
    async def get_report(process_id: str) -> Response:
        return json_response(lookup(process_id).report_json())

    @bp.get("/<process_id>/probe")
    async def probe(process_id: str) -> Response:
        try:
            proc = supervisor.get(process_id)
        except ProcessNotFound:
            return json_response({"streams": [], "log": [f"Unknown process ID ({process_id})"]})
        resolved = supervisor.resolve(proc.config)
        async with probes:
            result = await run_probe(resolved, supervisor.ffmpeg, record=supervisor.pid_records,
                                     record_id=f"{process_id} (probe)")
        return json_response(result)

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
            raise ApiError(404, "Unknown process ID", "unknown key") from None
        return json_response(value)

    @bp.put("/<process_id>/metadata/<key>")
    async def put_metadata(process_id: str, key: str) -> Response:
        if not key:
            raise ApiError(400, "Invalid key", "The key must not be of length 0")
        value = await bind_json()
        try:
            supervisor.set_metadata(process_id, key, value)
        except ProcessNotFound:
            raise not_found(process_id) from None
        except MetadataTooLarge as exc:
            raise ApiError(400, "Invalid metadata", str(exc)) from None
        return json_response(value)

    return bp


async def read_command() -> str:
    """The command of a ``PUT /api/v3/process/{id}/command`` body, checked as Core checks it
    (400 ``Invalid JSON`` / ``Unknown command provided``)."""
    body = await bind_json()
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON", "expect type 'object' for the command")
    cmd = body.get("command")
    if cmd is not None and not isinstance(cmd, str):
        raise ApiError(400, "Invalid JSON", "command: expect type 'string'")
    if not cmd:
        raise ApiError(400, "Invalid JSON", "Key: 'Command.Command' Error:Field validation "
                                            "for 'Command' failed on the 'required' tag")
    if cmd not in COMMANDS:
        raise ApiError(400, "Unknown command provided",
                       "Known commands are: start, stop, reload, restart")
    return cmd


async def list_body(supervisor: Supervisor, views: Views, args: Mapping[str, str]) -> bytes:
    """The JSON of ``GET /api/v3/process`` for the query ``args`` (first value per name):
    ``filter``, ``reference``, ``id``, ``idpattern``, ``refpattern`` (module docstring).
    Checkpoints every :data:`LIST_CHECKPOINT_EVERY` processes (every one with patterns)."""
    filters = _parse_filters(args.get("filter"))
    reference = args.get("reference", "")
    wanted = [i for i in args.get("id", "").split(",") if i]
    idpattern = args.get("idpattern", "")
    refpattern = args.get("refpattern", "")
    result = []
    patterns = bool(idpattern or refpattern)
    for n, process_id in enumerate(supervisor.ids()):
        if patterns or n % LIST_CHECKPOINT_EVERY == 0:
            await trio.lowlevel.checkpoint()  # a costly pattern never stalls other requests
        try:
            proc = supervisor.get(process_id)
        except ProcessNotFound:
            continue  # deleted meanwhile
        ref = proc.config.reference
        try:
            if idpattern and not glob_match(idpattern, process_id):
                continue
            if refpattern and not glob_match(refpattern, ref):
                continue
        except GlobError:
            return b"[]\n"  # Core: an invalid pattern lists nothing
        if reference:
            if ref != reference:
                continue
        elif wanted and process_id not in wanted:
            continue
        result.append(process_json(supervisor, proc, filters, views))
    return core_dumps_bytes(result) + b"\n"


def state_body(proc: Process, views: Views) -> bytes:
    """The JSON of ``GET /api/v3/process/{id}/state`` (the progress prerendered per change)."""
    state = proc.state_json()
    state["progress"] = views.progress.get(proc.id, state["progress"])
    return core_dumps_bytes(state) + b"\n"


#: the CORS headers the app adds to every ``/api`` answer (after the type and length)
API_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-headers", b"Authorization, Content-Type"),
    (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, PATCH, OPTIONS"),
    (b"access-control-expose-headers", b"Location, Link"),
]
PROCESS_PREFIX = b"/api/v3/process"
LIST_ARGS = frozenset({"filter", "reference", "id", "idpattern", "refpattern"})


class ProcessPoll:
    """The two requests the Restreamer UI polls, answered by the HTTP server directly (a
    direct route of :class:`trio_core.httpd.dispatch.Dispatch` for ``/api/v3/process``):
    ``GET /api/v3/process`` (the list, its query among ``filter``, ``reference``, ``id``,
    ``idpattern``, ``refpattern`` without percent-escapes) and ``GET
    /api/v3/process/{id}/state`` (a known process with a plain id). Only for a bodyless
    ``GET`` that the request may see (auth off, localhost with ``disable_localhost``, or a
    valid access token): then the same bytes and headers as the app's routes, without the
    framework's per-request cost (10× the state answer's). Everything else (unknown id, 401,
    encoded ids or arguments, other arguments, HEAD, other paths) passes to the app, which
    stays the reference."""

    def __init__(self, supervisor: Supervisor, views: Views, auth: Authenticator) -> None:
        self.supervisor = supervisor
        self.views = views
        self.auth = auth

    async def __call__(self, channel: Channel) -> bool:
        request = channel.request
        if request is None or request.method != "GET" or request.has_body:
            return False
        path, _, query = request.target.partition(b"?")
        rest = path[len(PROCESS_PREFIX):]
        if not rest:
            args = self._list_args(query)
            if args is None or not self._allowed(channel):
                return False
            body = await list_body(self.supervisor, self.views, args)
        elif rest.startswith(b"/") and rest.endswith(b"/state"):
            raw_id = rest[1:-6]
            if not raw_id or b"/" in raw_id or b"%" in raw_id or not self._allowed(channel):
                return False
            try:
                proc = self.supervisor.get(raw_id.decode("ascii"))
            except (ProcessNotFound, UnicodeDecodeError):
                return False
            body = state_body(proc, self.views)
        else:
            return False
        await channel.respond(200, [(b"content-type", JSON_CONTENT_TYPE_BYTES),
                                    (b"content-length", b"%d" % len(body)), *API_CORS], body)
        return True

    def _allowed(self, channel: Channel) -> bool:
        assert channel.request is not None
        return self.auth.allows(channel.client[0], channel.request.header(b"authorization"))

    @staticmethod
    def _list_args(query: bytes) -> dict[str, str] | None:
        """The list's arguments (first value per name), None when the app should parse them."""
        args: dict[str, str] = {}
        if not query:
            return args
        if b"%" in query or b"+" in query:
            return None
        try:
            text = query.decode("ascii")
        except UnicodeDecodeError:
            return None
        for pair in text.split("&"):
            if not pair:
                continue
            name, _, value = pair.partition("=")
            if name not in LIST_ARGS:
                return None
            args.setdefault(name, value)
        return args
