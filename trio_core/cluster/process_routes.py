"""``/api/v3/process`` over the whole cluster (with ``cluster.enable``), Core's shapes and
status codes: the same bodies, validation and errors as :mod:`trio_core.api.process_routes`
(whose helpers it uses), but configs, orders and metadata are read from and written to the
shared store in Redis, so any node lists, creates, updates, deletes and commands every
process of the cluster.

* Writes go to Redis and wake this node's reconcile; the node that holds the process's lease
  applies them within a reconcile tick (a ``command`` answers "OK" once it is recorded, as
  Core's cluster does). ``restart`` and ``reload`` are one-shot counters in the record.
* ``state`` and ``report`` come from the node that runs the process: this node's supervisor
  when it is here, else the owner's local view (``GET <owner>/api/v3/cluster/local/process``,
  one request per owner for a list, the caller's ``Authorization`` forwarded, 2 s deadline).
  A process nobody runs (just created, being moved, no healthy node) shows Core's idle state
  (``exec`` "finished", its order).
* ``probe`` runs on the node that runs the process's ``#other:output=`` reference (where the
  reference resolves; affinity keeps the process there too), else on the process's owner, else
  here (``X-Trio-Core-Cluster-Hop``: the asked node runs it itself; 30 s deadline).
* Redis unreachable -> 503 "Cluster unavailable" naming the problem.

Cancellation: a cancelled request cancels its Redis call or proxy request; each Redis write
is one atomic command (or MULTI), so nothing is half-applied.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import trio

from trio_core.api.process_routes import (
    _decode,
    _parse_filters,
    _validate,
    not_found,
    read_command,
)
from trio_core.cluster.node import RedisUnavailable, new_record, process_dependencies
from trio_core.engine.process import Process
from trio_core.engine.process_config import generate_id
from trio_core.engine.supervisor import ProcessNotFound, json_size
from trio_core.ffmpeg.probe import run_probe
from trio_core.http.errors import ApiError, bind_json, json_response
from trio_core.http.go_json import core_json_response
from trio_core.web import Blueprint, Response, request

if TYPE_CHECKING:
    from trio_core.cluster.node import ClusterNode
    from trio_core.cluster.redis_db import Record

__all__ = ["LOCAL_PREFIX", "cluster_process_blueprint", "OwnerViews"]

#: where a node answers for the processes it runs itself (the plain process routes)
LOCAL_PREFIX = "/api/v3/cluster/local/process"
PROXY_TIMEOUT = 2.0
#: a probe asked of the node that can resolve its ``#id:`` inputs (FFmpeg's probe takes seconds)
PROBE_TIMEOUT = 30.0
#: one node asking another: the asked node answers itself, never forwards again
HOP_HEADER = "X-Trio-Core-Cluster-Hop"


def unavailable(exc: Exception) -> ApiError:
    return ApiError(503, "Cluster unavailable", str(exc))


class OwnerViews:
    """``state``/``report`` of processes, from whichever node runs them."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def owner_address(self, process_id: str,
                      holders: dict[str, tuple[str, int]] | None = None) -> tuple[str, str] | None:
        """(node id, API address) of the node holding the process's lease, if not this one
        (``holders``: fresh from Redis; else what the last reconcile saw)."""
        holder = (holders if holders is not None else self.node.holders).get(process_id)
        if holder is None or holder[0] == self.node.id:
            return None
        doc = self.node.live_nodes.get(holder[0])
        if doc is None:
            return None
        return holder[0], str(doc.get("address", ""))

    async def fetch(self, ids: Iterable[str], filters: set[str]) -> dict[str, dict[str, Any]]:
        """``{id: process json with the owner-side parts}`` for processes run elsewhere."""
        wanted = {f for f in filters if f in ("state", "report")}
        ids = [pid for pid in ids if pid not in self.node.book.held]
        if not wanted or not ids:
            return {}
        try:
            holders = await self.node.call(self.node.require_db().holders, ids)
        except RedisUnavailable as exc:
            raise unavailable(exc) from None
        if any(h[0] not in self.node.live_nodes for h in holders.values()):
            try:
                self.node.live_nodes, _ = await self.node.call(self.node.require_db().nodes)
            except RedisUnavailable as exc:
                raise unavailable(exc) from None
        by_owner: dict[str, list[str]] = {}
        for pid in ids:
            owner = self.owner_address(pid, holders)
            if owner is not None and wanted:
                by_owner.setdefault(owner[1], []).append(pid)
        out: dict[str, dict[str, Any]] = {}
        if not by_owner:
            return out
        import httpx
        headers = {}
        if auth := request.headers.get("Authorization"):
            headers["Authorization"] = auth

        async def one(address: str, pids: list[str]) -> None:
            params = {"id": ",".join(pids), "filter": ",".join(sorted(wanted))}
            try:
                async with httpx.AsyncClient(timeout=PROXY_TIMEOUT) as client:
                    resp = await client.get(address + LOCAL_PREFIX, params=params, headers=headers)
                if resp.status_code == 200:
                    for item in resp.json():
                        out[item["id"]] = item
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass

        with trio.move_on_after(PROXY_TIMEOUT + 0.5):
            async with trio.open_nursery() as nursery:
                for address, pids in by_owner.items():
                    nursery.start_soon(one, address, pids)
        return out


def idle_state(node: ClusterNode, record: Record, config: Any) -> dict[str, Any]:
    """Core's state of a process nobody runs (its order, ``exec`` finished)."""
    proc = Process(node.supervisor, config, order=record.get("order", "stop"),
                   created_at=record.get("created_at"), updated_at=record.get("updated_at"))
    return proc.state_json()

def idle_report() -> dict[str, Any]:
    now = int(time.time())
    return {"created_at": now, "prelude": [], "log": [], "matches": [], "history": []}

async def process_views(node: ClusterNode, records: dict[str, Record], filters: set[str],
                        metadata: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Core's process objects of ``records`` with the parts in ``filters``."""
    sup = node.supervisor
    remote = await OwnerViews(node).fetch(records, filters)
    result = []
    for pid, record in records.items():
        cfg = _validate(record["config"], "Invalid process config")
        out: dict[str, Any] = {
            "id": pid, "type": "ffmpeg", "reference": cfg.reference,
            "created_at": int(record.get("created_at", 0)),
            "updated_at": int(record.get("updated_at", 0)),
        }
        if "config" in filters:
            out["config"] = record["config"]
        local = None
        if pid in node.book.held:
            try:
                local = sup.get(pid)
            except ProcessNotFound:
                local = None
        if "state" in filters:
            if local is not None:
                out["state"] = local.state_json()
            elif pid in remote and "state" in remote[pid]:
                out["state"] = remote[pid]["state"]
            else:
                out["state"] = idle_state(node, record, cfg)
        if "report" in filters:
            if local is not None:
                out["report"] = local.report_json()
            elif pid in remote and "report" in remote[pid]:
                out["report"] = remote[pid]["report"]
            else:
                out["report"] = idle_report()
        if "metadata" in filters:
            out["metadata"] = (metadata or {}).get(pid)
        result.append(out)
    return result



async def _probe_on(address: str, process_id: str) -> Any:
    """The probe of ``process_id`` run by the node at ``address`` (None when it fails)."""
    import httpx
    headers = {HOP_HEADER: "1"}
    if auth := request.headers.get("Authorization"):
        headers["Authorization"] = auth
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as client:
            resp = await client.get(f"{address}/api/v3/process/{quote(process_id, safe='')}/probe",
                                    headers=headers)
        if resp.status_code == 200:
            return resp.json()
    except (httpx.HTTPError, ValueError):
        pass
    return None


def redis_access(node: ClusterNode) -> tuple[Callable[..., Awaitable[Any]], Callable[[], Any]]:
    """``call(fn, *args)`` (``node.call``) and ``db()`` (``node.require_db``) for route
    handlers: Redis out of reach or not connected yet -> 503 (:func:`unavailable`)."""

    async def call(fn: Any, *args: Any) -> Any:
        try:
            return await node.call(fn, *args)
        except RedisUnavailable as exc:
            raise unavailable(exc) from None

    def db() -> Any:
        try:
            return node.require_db()
        except RedisUnavailable as exc:
            raise unavailable(exc) from None

    return call, db


def cluster_process_blueprint(node: ClusterNode, name: str = "process",
                              url_prefix: str = "/api/v3/process") -> Blueprint:
    """The cluster-wide process routes (see the module docstring)."""
    bp = Blueprint(name, __name__, url_prefix=url_prefix)
    sup = node.supervisor
    probes = trio.CapacityLimiter(4)
    call, db = redis_access(node)

    async def record_of(process_id: str) -> Record:
        record = await call(db().record, process_id)
        if record is None:
            raise not_found(process_id)
        return record

    def check_size(config: dict[str, Any]) -> None:
        limit = sup.max_config_bytes
        if limit > 0 and (size := json_size(config)) > limit:
            raise ApiError(400, "Invalid process config",
                           f"the process config is {size} bytes as JSON, more than "
                           f"db.max_process_config_bytes ({limit})")

    @bp.get("")
    async def list_processes() -> Response:
        from trio_core.util.glob import GlobError, glob_match
        filters = _parse_filters(request.args.get("filter"))
        reference = request.args.get("reference", "")
        wanted = [i for i in request.args.get("id", "").split(",") if i]
        idpattern = request.args.get("idpattern", "")
        refpattern = request.args.get("refpattern", "")
        records = await call(db().records)
        chosen: dict[str, Record] = {}
        for pid, record in records.items():
            ref = record["config"].get("reference", "")
            try:
                if idpattern and not glob_match(idpattern, pid):
                    continue
                if refpattern and not glob_match(refpattern, ref):
                    continue
            except GlobError:
                return core_json_response([])
            if reference:
                if ref != reference:
                    continue
            elif wanted and pid not in wanted:
                continue
            chosen[pid] = record
        metadata = await call(db().all_metadata) if "metadata" in filters else None
        return core_json_response(await process_views(node, chosen, filters, metadata))

    @bp.post("")
    async def add_process() -> Response:
        body = await bind_json()
        merged = _decode({"id": generate_id(), "type": "ffmpeg", "autostart": True}, body)
        if merged.get("type") != "ffmpeg":
            raise ApiError(400, "Unsupported process type", "Supported process types are: ffmpeg")
        if not merged["input"] or not merged["output"]:
            raise ApiError(400, "At least one input and one output need to be defined")
        cfg = _validate(merged, "Invalid process config")
        if not cfg.id:
            raise ApiError(400, "Invalid process config", "id: an empty ID is not allowed")
        config = cfg.to_json()
        check_size(config)
        record = new_record(config, "start" if cfg.autostart else "stop")
        if not await call(db().create, cfg.id, record):
            raise ApiError(400, "Invalid process config", "process already exists")
        node.wake()
        return json_response(config)

    @bp.get("/<process_id>")
    async def get_process(process_id: str) -> Response:
        filters = _parse_filters(request.args.get("filter"))
        record = await record_of(process_id)
        metadata = None
        if "metadata" in filters:
            metadata = {process_id: await call(db().metadata, process_id)}
        (item,) = await process_views(node, {process_id: record}, filters, metadata)
        return core_json_response(item, marked=("state",))

    @bp.put("/<process_id>")
    async def update_process(process_id: str) -> Response:
        record = await call(db().record, process_id)
        if record is None:
            raise ApiError(404, "Process not found", process_id)
        body = await bind_json()
        merged = _decode(dict(record["config"]), body)
        cfg = _validate(merged, "Process can't be updated")
        if not cfg.id:
            raise ApiError(400, "Process can't be updated", "id: an empty ID is not allowed")
        config = cfg.to_json()
        check_size(config)
        if cfg.id != process_id and await call(db().record, cfg.id) is not None:
            raise ApiError(400, "Process can't be updated", "process already exists")
        now = int(time.time())
        new = dict(record, config=config, created_at=now, updated_at=now,
                   rev=int(record.get("rev", 0)) + 1)
        await call(db().put, cfg.id, new, process_id)
        node.wake()
        return json_response(config)

    @bp.delete("/<process_id>")
    @bp.delete("/<path:process_id>")
    async def delete_process(process_id: str) -> Response:
        if not await call(db().delete, process_id):
            raise not_found(process_id)
        node.wake()
        return json_response("OK")

    @bp.put("/<process_id>/command")
    async def command(process_id: str) -> Response:
        cmd = await read_command()
        record = await call(db().record, process_id)
        if record is None:
            raise ApiError(400, "Command failed", "unknown process")
        new = dict(record)
        if cmd in ("start", "stop"):
            new["order"] = cmd
        elif record.get("order") == "start":  # restart/reload act on a started process only
            new[cmd] = int(record.get(cmd, 0)) + 1
        if new != record:
            await call(db().put, process_id, new)
            node.wake()
        return json_response("OK")

    @bp.get("/<process_id>/config")
    async def get_config(process_id: str) -> Response:
        return json_response((await record_of(process_id))["config"])

    @bp.get("/<process_id>/state")
    async def get_state(process_id: str) -> Response:
        record = await record_of(process_id)
        (item,) = await process_views(node, {process_id: record}, {"state"}, None)
        return core_json_response(item["state"])

    @bp.get("/<process_id>/report")
    async def get_report(process_id: str) -> Response:
        record = await record_of(process_id)
        (item,) = await process_views(node, {process_id: record}, {"report"}, None)
        return json_response(item["report"])

    @bp.get("/<process_id>/probe")
    async def probe(process_id: str) -> Response:
        record = await call(db().record, process_id)
        if record is None:
            return json_response({"streams": [], "log": [f"Unknown process ID ({process_id})"]})
        cfg = _validate(record["config"], "Invalid process config")
        if not request.headers.get(HOP_HEADER):
            # a ``#other:output=`` input resolves on other's node (placement affinity): the
            # probe runs there; a process without references on its own node
            target = process_dependencies({process_id: record}).get(process_id, process_id)
            holders = await call(db().holders, [target])
            owner = OwnerViews(node).owner_address(target, holders)
            if owner is not None and owner[1]:
                proxied = await _probe_on(owner[1], process_id)
                if proxied is not None:
                    return json_response(proxied)
        async with probes:
            result = await run_probe(sup.resolve(cfg), sup.ffmpeg, record=sup.pid_records,
                                     record_id=f"{process_id} (probe)")
        return json_response(result)

    @bp.get("/<process_id>/metadata")
    async def get_all_metadata(process_id: str) -> Response:
        await record_of(process_id)
        return json_response(await call(db().metadata, process_id))

    @bp.get("/<process_id>/metadata/<key>")
    async def get_metadata(process_id: str, key: str) -> Response:
        await record_of(process_id)
        meta = await call(db().metadata, process_id) or {}
        if key not in meta:
            raise ApiError(404, "Unknown process ID", "unknown key")
        return json_response(meta[key])

    @bp.put("/<process_id>/metadata/<key>")
    async def put_metadata(process_id: str, key: str) -> Response:
        if not key:
            raise ApiError(400, "Invalid key", "The key must not be of length 0")
        value = await bind_json()
        await record_of(process_id)
        meta = await call(db().metadata, process_id) or {}
        if value is None:
            meta.pop(key, None)
        else:
            limit = sup.max_metadata_bytes
            if limit > 0 and (size := json_size(value)) > limit:
                raise ApiError(400, "Invalid metadata",
                               f"{key}: the value is {size} bytes as JSON, more than "
                               f"db.max_metadata_value_bytes ({limit})")
            meta[key] = value
        await call(db().set_metadata, process_id, meta)
        return json_response(value)

    return bp


def whep_location(node: ClusterNode, process_id: str, path: str, query: str) -> str | None:
    """The owner's URL for a WHEP request about ``process_id`` when another node runs it."""
    owner = OwnerViews(node).owner_address(process_id)
    if owner is None:
        return None
    url = owner[1] + quote(path, safe="/%")
    return f"{url}?{query}" if query else url
