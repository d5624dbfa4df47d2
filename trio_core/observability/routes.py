"""HTTP routes: ``/api/v3/session[/active]``, ``/api/v3/metrics`` (GET, POST), ``/metrics``.

Shapes as Core v16.16 (``http/handler/api/session.go``, ``metrics.go``, ``http/api/*.go``):

* ``GET /api/v3/session?collectors=hls,webrtc`` -> ``{name: SessionSummary}``;
  ``GET /api/v3/session/active?collectors=…`` -> ``{name: [Session…]}``. As in Core, the
  ``collectors`` list is split on ``,`` as given (no parameter -> the key ``""`` with an
  empty summary); an unknown collector gives an empty summary / list.
* ``GET /api/v3/metrics`` -> ``[{name, description, labels}]`` sorted by name;
  ``POST /api/v3/metrics`` with ``{timerange_sec, interval_sec, metrics: [{name, labels}]}``
  -> ``{timerange_sec, interval_sec, metrics: [{name, labels, values: [[ts, value]…]}]}``
  (``timerange_sec`` 0: the current values; else the history resampled; the response's
  ``timerange_sec``/``interval_sec`` are the history's resolution, 0 when disabled).
  Label values in the query are regular expressions. 400 ``Invalid JSON`` names the problem.
* ``GET /api/v3/widget/process/{id}`` (no authentication, as Core: the public player
  page shows it) -> ``{current_sessions, total_sessions, uptime}``: sessions whose
  reference starts with the process's reference, in the ``hls`` collector as Core and, in
  trio-core, the ``webrtc`` one too; ``uptime`` 0 unless running; 404 unknown process.
* ``GET /metrics`` (``metrics.enable_prometheus``): the Prometheus text exposition; no
  authentication, as Core (which only IP-limits it); rendered at most once a second (an
  unauthenticated client cannot make the server do more work by scraping faster).

All views are async and cheap (synchronous reads of in-memory state); ``/metrics`` and the
session views first sync the WebRTC viewers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from trio_core.http.errors import ApiError, json_response, read_json
from trio_core.http.openapi import doc
from trio_core.observability.monitor import History, Monitor, Pattern, Snapshot, series_json
from trio_core.observability.sessions import SessionRegistry
from trio_core.web import Blueprint, Response, request

__all__ = ["metrics_blueprint", "prometheus_blueprint", "session_blueprint",
           "widget_blueprint"]

MAX_QUERY_METRICS = 1000
MAX_RESPONSE_VALUES = 1_000_000  # [ts, value] pairs in one POST /api/v3/metrics answer
PROMETHEUS_CACHE_SECONDS = 1.0

_SESSION = {"type": "object", "properties": {
    "id": {"type": "string"}, "reference": {"type": "string"},
    "created_at": {"type": "integer"}, "local": {"type": "string"},
    "remote": {"type": "string"}, "extra": {"type": "string"},
    "bytes_rx": {"type": "integer"}, "bytes_tx": {"type": "integer"},
    "bandwidth_rx_kbit": {"type": "number"}, "bandwidth_tx_kbit": {"type": "number"}}}
_STATS = {"type": "object", "properties": {
    "sessions": {"type": "integer"}, "traffic_rx_mb": {"type": "integer"},
    "traffic_tx_mb": {"type": "integer"}}}
_SUMMARY = {"type": "object", "properties": {
    "active": {"type": "object", "properties": {
        "list": {"type": "array", "items": _SESSION}, "sessions": {"type": "integer"},
        "bandwidth_rx_mbit": {"type": "number"}, "bandwidth_tx_mbit": {"type": "number"},
        "max_sessions": {"type": "integer"}, "max_bandwidth_rx_mbit": {"type": "number"},
        "max_bandwidth_tx_mbit": {"type": "number"}}},
    "summary": {"type": "object", "properties": {
        "remote": {"type": "object", "additionalProperties": _STATS},
        "local": {"type": "object", "additionalProperties": _STATS},
        "reference": {"type": "object", "additionalProperties": _STATS},
        "sessions": {"type": "integer"}, "traffic_rx_mb": {"type": "integer"},
        "traffic_tx_mb": {"type": "integer"}}}}}
_COLLECTORS = [{"name": "collectors", "in": "query", "required": False,
                "description": "Comma separated list of collectors (hls, webrtc, rtmp, srt, whip)",
                "schema": {"type": "string"}}]
_QUERY = {"type": "object", "properties": {
    "timerange_sec": {"type": "integer"}, "interval_sec": {"type": "integer"},
    "metrics": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}
_RESULT = {"type": "object", "properties": {
    "timerange_sec": {"type": "integer"}, "interval_sec": {"type": "integer"},
    "metrics": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "values": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}}}}}
_DESCRIPTIONS = {"type": "array", "items": {"type": "object", "properties": {
    "name": {"type": "string"}, "description": {"type": "string"},
    "labels": {"type": "array", "items": {"type": "string"}}}}}


def _collectors() -> list[str]:
    return request.args.get("collectors", "").split(",")


def session_blueprint(registry: SessionRegistry, before: Callable[[], None]) -> Blueprint:
    """The session routes over ``registry``; ``before()`` refreshes live collectors."""
    bp = Blueprint("sessions", __name__)

    @bp.get("/api/v3/session")
    @doc(summary="Get a summary of all active and past sessions", tags=["v16.7.2"],
         parameters=_COLLECTORS,
         responses={200: {"type": "object", "additionalProperties": _SUMMARY}})
    async def session_summary() -> Response:
        before()
        return json_response({name: registry.summary(name) for name in _collectors()})

    @bp.get("/api/v3/session/active")
    @doc(summary="Get a minimal summary of all active sessions", tags=["v16.7.2"],
         parameters=_COLLECTORS,
         responses={200: {"type": "object",
                          "additionalProperties": {"type": "array", "items": _SESSION}}})
    async def session_active() -> Response:
        before()
        return json_response({name: registry.active(name) for name in _collectors()})

    return bp


def _parse_query(body: Any) -> tuple[int, int, list[Pattern]]:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON", "expected a JSON object")
    numbers = []
    for key in ("timerange_sec", "interval_sec"):
        value = body.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(400, "Invalid JSON", f"{key} must be an integer")
        numbers.append(value)
    metrics = body.get("metrics", [])
    if metrics is None:
        metrics = []
    if not isinstance(metrics, list):
        raise ApiError(400, "Invalid JSON", "metrics must be an array")
    if len(metrics) > MAX_QUERY_METRICS:
        raise ApiError(400, "Invalid JSON", f"at most {MAX_QUERY_METRICS} metrics per query")
    patterns = []
    for i, item in enumerate(metrics):
        if not isinstance(item, dict) or not isinstance(item.get("name", ""), str):
            raise ApiError(400, "Invalid JSON", f"metrics[{i}] must be {{name, labels}}")
        labels = item.get("labels") or {}
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ApiError(400, "Invalid JSON", f"metrics[{i}].labels must map strings "
                           "to strings")
        patterns.append(Pattern(item.get("name", ""), labels))
    return numbers[0], numbers[1], patterns


def metrics_blueprint(monitor: Monitor, history: History | None) -> Blueprint:
    """``GET``/``POST /api/v3/metrics`` over ``monitor`` and (optional) ``history``."""
    bp = Blueprint("metrics", __name__)

    @bp.get("/api/v3/metrics")
    @doc(summary="List all known metrics with their description and labels",
         tags=["v16.10.0"], responses={200: _DESCRIPTIONS})
    async def metrics_describe() -> Response:
        return json_response([
            {"name": d.name, "description": d.description, "labels": list(d.labels)}
            for d in monitor.describe()])

    @bp.post("/api/v3/metrics")
    @doc(summary="Query the collected metrics", tags=["v16.7.2"], request=_QUERY,
         responses={200: _RESULT, 400: None})
    async def metrics_query() -> Response:
        timerange, interval, patterns = _parse_query(await read_json())
        if timerange == 0:
            snapshots = [Snapshot(time.time(), monitor.collect(patterns))]
        elif history is None:
            snapshots = []
        else:
            try:
                snapshots = history.query(timerange, interval, patterns)
            except ValueError as exc:
                raise ApiError(400, "Invalid JSON", str(exc)) from None
            total = sum(len(s.values) for s in snapshots if s.values)
            if total > MAX_RESPONSE_VALUES:
                raise ApiError(400, "Invalid JSON", f"the query selects {total} values, at most "
                               f"{MAX_RESPONSE_VALUES}: narrow the metrics/labels or raise "
                               "interval_sec")
        return json_response({
            "timerange_sec": history.range if history is not None else 0,
            "interval_sec": history.interval if history is not None else 0,
            "metrics": series_json(snapshots),
        })

    return bp


def prometheus_blueprint(render: Callable[[], tuple[bytes, str]]) -> Blueprint:
    """``GET /metrics``: ``render()`` returns the exposition and its content type."""
    bp = Blueprint("prometheus", __name__)
    cache: list[Any] = [-1e9, b"", ""]  # rendered at, body, content type

    @bp.get("/metrics")
    @doc(summary="Prometheus metrics", tags=["v16.7.2"], produces="text/plain",
         responses={200: {"type": "string"}}, security=False)
    async def prometheus_metrics() -> Response:
        now = time.monotonic()
        if now - cache[0] >= PROMETHEUS_CACHE_SECONDS:  # unauthenticated: bound the work
            cache[1], cache[2] = render()
            cache[0] = now
        return Response(cache[1], content_type=cache[2])

    return bp


def widget_blueprint(supervisor: Any, registry: SessionRegistry, auth: Any,
                     before: Callable[[], None]) -> Blueprint:
    """``GET /api/v3/widget/process/<id>`` (public)."""
    bp = Blueprint("widget", __name__)

    @bp.get("/api/v3/widget/process/<process_id>")
    @auth.public
    @doc(summary="Fetch minimal statistics about a process", tags=["v16.7.2"],
         responses={200: {"type": "object", "properties": {
             "current_sessions": {"type": "integer"}, "total_sessions": {"type": "integer"},
             "uptime": {"type": "integer"}}}, 404: None}, security=False)
    async def widget_process(process_id: str) -> Response:
        try:
            process = supervisor.get(process_id)
        except KeyError:
            raise ApiError(404, "Unknown process ID", "unknown process") from None  # as Core
        state = process.state_json()
        reference = process.config.reference
        before()
        current = total = 0
        for name in ("hls", "webrtc"):
            summary = registry.summary(name)
            current += sum(1 for s in summary["active"]["list"]
                           if s["reference"].startswith(reference))
            total += sum(stats["sessions"]
                         for ref, stats in summary["summary"]["reference"].items()
                         if ref.startswith(reference))
        return json_response({
            "current_sessions": current, "total_sessions": total,
            "uptime": state["runtime_seconds"] if state["exec"] == "running" else 0,
        })

    return bp
