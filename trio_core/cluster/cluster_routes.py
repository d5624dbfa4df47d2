"""``/api/v3/cluster`` in Core v17's shapes (what ``core_client``'s ``v3_cluster_*`` calls
decode): about, nodes, health, the process routes again under ``/api/v3/cluster/process``,
the store's maps, leave (drain) and reallocation.

* ``GET /api/v3/cluster`` -> ``Cluster`` (``id``, ``name``, ``leader``, ``address``, ``raft``,
  ``nodes``, ``version``, ``degraded``, ``degraded_error``, ``status``); there is no raft:
  ``raft`` describes the Redis this node uses (``state`` "redis", ``log_index`` = the store's
  version), ``leader`` is false everywhere (no node leads: Redis is the authority).
* ``GET /healthy`` -> ``true`` while this node is registered and its last heartbeat
  reached Redis less than a lease ago.
* ``GET /node``, ``/node/{id}`` -> ``ClusterNode``; ``/node/{id}/process`` the processes it
  runs; ``/node/{id}/state`` ``{"state"}``; ``PUT`` it (``online``, ``maintenance``, ``leave``:
  the last two drain the node, one process at a time); ``/node/{id}/version``.
* ``GET /db/map/process`` -> ``{process id: node id}`` (lease holders); ``/db/node`` ->
  ``[{id, state, updated_at}]``.
* ``PUT /leave`` ``{"id"}`` (empty: this node) drains a node; ``PUT /reallocation``
  ``[{"target_node_id", "process_ids": [{"id", "domain"}]}]`` pins processes to nodes (moved
  one at a time).

Unknown node -> 404 "Node not found"; Redis unreachable -> 503 "Cluster unavailable".
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from trio_core import __version__
from trio_core.cluster import compatibility as compat
from trio_core.cluster.process_routes import process_views, redis_access
from trio_core.cluster.redis_url import redacted
from trio_core.http.errors import ApiError, bind_json, json_response
from trio_core.http.go_json import core_json_response
from trio_core.web import Blueprint, Response

if TYPE_CHECKING:
    from trio_core.cluster.node import ClusterNode

__all__ = ["cluster_blueprint"]

NODE_STATES = ("online", "maintenance", "leave")


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_json(node: ClusterNode, node_id: str, doc: dict[str, Any] | None) -> dict[str, Any]:
    """Core v17's ``ClusterNode`` of ``node_id`` (``doc``: its live registration, or None)."""
    now = time.time()
    live = doc is not None
    doc = doc or {}
    status = (doc.get("state") or "online") if live else "offline"
    last_contact = max(0.0, (now - float(doc.get("updated_at", now))) * 1000) if live else 0.0
    if node_id == node.id:
        last_contact = node.last_contact_ms()
    resources = doc.get("resources") or {}
    address = str(doc.get("address", ""))
    return {
        "id": node_id, "name": str(doc.get("name") or node_id), "public_domains": [],
        "version": str(doc.get("version", "")), "status": status,
        "error": str(doc.get("error") or "") if live else "no heartbeat in the last lease",
        "voter": True, "leader": False, "address": address,
        "created_at": _rfc3339(float(doc.get("started_at", now))),
        "uptime_seconds": int(now - float(doc.get("started_at", now))) if live else 0,
        "last_contact_ms": float(last_contact), "latency_ms": 0.0,
        "core": {"address": address, "status": status, "error": "",
                 "last_contact_ms": float(last_contact), "latency_ms": 0.0,
                 "version": str(doc.get("version", ""))},
        "resources": {
            "ncpu": float(resources.get("ncpu", 1.0)),
            "cpu_used": float(resources.get("cpu_used", 0.0)),
            "cpu_limit": float(resources.get("cpu_limit", 100.0)),
            "memory_used_bytes": int(resources.get("memory_used_bytes", 0)),
            "memory_limit_bytes": int(resources.get("memory_limit_bytes", 0)),
            "is_throttling": bool(resources.get("is_throttling", False)),
        },
        # Core v16's ClusterNode (core_client 1.1.1) reads these two
        "state": status, "last_update": int(float(doc.get("updated_at", 0))) if live else 0,
        # trio-core extras: leases held and the process limit
        "processes": int(doc.get("processes", 0)),
        "max_processes": int(doc.get("max_processes", 0)),
    }


def cluster_blueprint(node: ClusterNode) -> Blueprint:
    """The ``/api/v3/cluster`` routes of ``node`` (see the module docstring)."""
    bp = Blueprint("cluster", __name__, url_prefix="/api/v3/cluster")
    call, db = redis_access(node)

    async def nodes() -> list[dict[str, Any]]:
        live, known = await call(db().nodes)
        wanted = await call(db().node_states)
        for nid, doc in live.items():
            if nid in wanted:
                doc["state"] = wanted[nid]
        compat.mark_incompatible(live)  # as the reconcile does: degraded, with the difference
        return [node_json(node, nid, live.get(nid)) for nid in sorted(set(known) | set(live))]

    def healthy() -> bool:
        return (node.ready.is_set() and node.db is not None
                and node.last_contact_ms() < node.settings.lease_seconds * 1000)

    @bp.get("")
    async def about() -> Response:
        degraded_error = ""
        try:
            listed = await nodes()
            version = await node.call(db().version)
        except ApiError as exc:
            listed, version, degraded_error = [], 0, "; ".join(exc.details) or exc.message
        if not degraded_error and not healthy():
            degraded_error = "this node's heartbeat has not reached Redis within the lease"
        live = sum(1 for n in listed if n["status"] != "offline")
        redis_url = redacted(node.settings.redis_url)  # never show a password
        return json_response({
            "id": node.id, "name": node.settings.name or node.id, "leader": False,
            "public_domains": [], "address": node.settings.address,
            "raft": {"address": redis_url, "state": "redis",
                     "last_contact_ms": float(node.last_contact_ms()),
                     "num_peers": max(0, live - 1), "log_term": 0, "log_index": int(version)},
            "nodes": listed, "version": __version__,
            # Core: "degraded" when a node is not online (offline, degraded, maintenance)
            "degraded": bool(degraded_error), "degraded_error": degraded_error,
            "status": "degraded" if degraded_error or any(
                n["status"] != "online" for n in listed) else "online",
            # trio-core extras (also in the metrics)
            "leases_held": node.leases_held(), "failovers": node.failovers,
            "moves": node.moves, "self_fenced": node.fenced,
        })

    @bp.get("/healthy")
    async def is_healthy() -> Response:
        return json_response(healthy())

    @bp.get("/node")
    async def node_list() -> Response:
        return json_response(await nodes())

    async def one(node_id: str) -> dict[str, Any]:
        for item in await nodes():
            if item["id"] == node_id:
                return item
        raise ApiError(404, "Node not found", f"unknown node {node_id!r}")

    @bp.get("/node/<node_id>")
    async def node_get(node_id: str) -> Response:
        return json_response(await one(node_id))

    @bp.get("/node/<node_id>/version")
    async def node_version(node_id: str) -> Response:
        item = await one(node_id)
        return json_response({"number": item["version"], "arch": "", "build_date": "",
                              "compiler": "", "repository_branch": "",
                              "repository_commit": ""})

    @bp.get("/node/<node_id>/state")
    async def node_state(node_id: str) -> Response:
        item = await one(node_id)
        state = item["status"] if item["status"] in NODE_STATES else "online"
        return json_response({"state": state})

    async def set_state(node_id: str, state: str) -> None:
        await one(node_id)
        await call(db().set_node_state, node_id, state)
        node.wake()

    @bp.put("/node/<node_id>/state")
    async def node_put_state(node_id: str) -> Response:
        body = await bind_json()
        state = body.get("state") if isinstance(body, dict) else None
        if state not in NODE_STATES:
            raise ApiError(400, "Invalid JSON", f"state: one of {', '.join(NODE_STATES)}")
        await set_state(node_id, state)
        return json_response("OK")

    @bp.get("/node/<node_id>/process")
    async def node_processes(node_id: str) -> Response:
        await one(node_id)
        records = await call(db().records)
        holders = await call(db().holders, sorted(records))
        mine = {pid: rec for pid, rec in records.items()
                if holders.get(pid, ("",))[0] == node_id}
        metadata = await call(db().all_metadata)
        return core_json_response(await process_views(
            node, mine, {"config", "state", "report", "metadata"}, metadata))

    @bp.get("/db/map/process")
    async def process_map() -> Response:
        records = await call(db().records)
        holders = await call(db().holders, sorted(records))
        return json_response({pid: holder[0] for pid, holder in sorted(holders.items())})

    @bp.get("/db/node")
    async def store_nodes() -> Response:
        return json_response([{"id": n["id"], "state": n["status"],
                               "updated_at": n["created_at"]} for n in await nodes()])

    @bp.put("/leave")
    async def leave() -> Response:
        body = await bind_json()
        node_id = body.get("id", "") if isinstance(body, dict) else None
        if not isinstance(node_id, str):
            raise ApiError(400, "Invalid JSON", "id: expect type 'string'")
        await set_state(node_id or node.id, "leave")
        return json_response("OK")

    @bp.put("/reallocation")
    async def reallocation() -> Response:
        body = await bind_json()
        if not isinstance(body, list):
            raise ApiError(400, "Invalid JSON", "expect an array of {target_node_id, process_ids}")
        records = await call(db().records)
        live, _ = await call(db().nodes)
        pins: dict[str, str] = {}
        for i, entry in enumerate(body):
            if not isinstance(entry, dict) or not isinstance(entry.get("process_ids"), list):
                raise ApiError(400, "Invalid JSON", f"[{i}]: expect {{target_node_id, process_ids}}")
            target = entry.get("target_node_id") or ""
            if target not in live:
                raise ApiError(400, "Invalid reallocation", f"[{i}]: unknown or dead node {target!r}")
            for item in entry["process_ids"]:
                pid = item.get("id") if isinstance(item, dict) else item
                if pid not in records:
                    raise ApiError(404, "Unknown process ID", f"{pid!r}")
                pins[pid] = target
        await call(db().set_pins, pins)
        node.wake()
        return json_response("OK")

    return bp
