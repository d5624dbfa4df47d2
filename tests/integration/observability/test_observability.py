"""Observability through the real server: OpenAPI, metrics history, Prometheus, sessions.

Real server (port 0), real FFmpeg, real WebRTC viewers (aiortc in subprocesses), real HTTP
(httpx); the Prometheus exposition is read with prometheus_client's own text parser and the
OpenAPI document is checked with openapi-spec-validator.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api, assert_error, make_config, wait_for
from tests.helpers.whep import wait_live, webrtc_process, whep_offer
from trio_core.http.openapi import _path
from trio_core.observability.hls_sessions import SESSION_ID
from trio_core.observability.routes import MAX_QUERY_METRICS
from trio_core.server import Running, Services, build_subsystems, serve
from trio_core.web import Blueprint

OPEN = {"sessions.ip_ignorelist": []}  # count sessions from 127.0.0.1 too (Core ignores it)


@asynccontextmanager
async def server(tmp_path: Path, ffmpeg: str, extra: Any = None, **overrides: Any
                 ) -> AsyncIterator[Running]:
    config = make_config(tmp_path, ffmpeg, **overrides)

    def subsystems(services: Services) -> list[Any]:
        return build_subsystems(services) + ([extra(services)] if extra is not None else [])

    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(partial(serve, config, subsystems=subsystems))
        try:
            yield running
        finally:
            running.shutdown()


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, /,
          **labels: str) -> float:
    """The sum of the samples ``metric`` whose labels include ``labels``."""
    hits = [v for (n, ls), v in samples.items()
            if n == metric and all((k, w) in ls for k, w in labels.items())]
    assert hits, f"no sample {metric}{labels}"
    return sum(hits)


class OddRoutes:
    """A subsystem registering routes the generator has never seen (as other helpers will)."""

    def __init__(self, services: Services) -> None:
        bp = Blueprint("odd", __name__)

        @bp.get("/odd/<int:n>/items/<path:rest>")
        async def odd_items(n: int, rest: str) -> str:
            """Odd items."""
            return "x"

        @bp.route("/odd/a", methods=["PUT", "DELETE"])
        @bp.route("/odd/b", methods=["PUT", "DELETE"])
        async def odd_two_rules() -> str:
            return "x"

        @bp.route("/odd/only-options", methods=["OPTIONS"])
        async def odd_options() -> str:
            return "x"

        services.app.register_blueprint(bp)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()


async def test_openapi_lists_every_route_and_validates(ffmpeg: str, tmp_path: Path) -> None:
    overrides = {"webrtc.enable": True, "srt.enable": True, "srt.address": "127.0.0.1:0"}
    async with server(tmp_path, ffmpeg, OddRoutes, **overrides) as srv:
        api = Api(srv.url)
        resp = await api.get("/api/swagger/doc.json")
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"  # Core's
        spec = resp.json()
        validate(spec)  # raises on an invalid OpenAPI document
        rules = list(srv.app.url_map.iter_rules())
        assert len(rules) > 20
        for rule in rules:
            path, _ = _path(rule.rule)
            methods = set(rule.methods or ()) - {"HEAD"}
            if methods != {"OPTIONS"}:
                methods.discard("OPTIONS")
            assert path in spec["paths"], f"{rule.rule} missing"
            for method in methods:
                assert method.lower() in spec["paths"][path], f"{method} {rule.rule} missing"
        # routes answered below the app (the storage mounts' ASGI layer) are there too
        external = srv.services.openapi_routes
        assert external
        for route in external:
            path, _ = _path(route.rule)
            for method in route.methods:
                assert method.lower() in spec["paths"].get(path, {}), f"{method} {path} missing"
        # every subsystem's routes: storage, SRT, Core's API, sessions/metrics
        for path, methods in {
                "/api/v3/fs": {"get"}, "/api/v3/fs/{storage}": {"get"},
                "/api/v3/fs/{storage}/{filepath}": {"get", "put", "delete"},
                "/memfs/{path}": {"get", "put", "post", "delete"}, "/{path}": {"get"},
                "/hls/{process_id}": {"get"}, "/api/v3/srt": {"get"}, "/api/v3/config": {"get", "put"},
                "/api/v3/skills": {"get"}, "/api/v3/session/active": {"get"},
                "/api/v3/metrics": {"get", "post"}}.items():
            assert methods <= set(spec["paths"].get(path, {})), (path, spec["paths"].get(path))
        fs_file = spec["paths"]["/api/v3/fs/{storage}/{filepath}"]
        assert fs_file["put"]["security"] == [{"ApiKeyAuth": []}]
        assert [p["name"] for p in fs_file["get"]["parameters"]] == ["storage", "filepath"]
        memfs = spec["paths"]["/memfs/{path}"]
        assert memfs["put"]["security"] == [{"BasicAuth": []}]
        assert "security" not in memfs["get"] and "509" in memfs["get"]["responses"]
        whep = spec["paths"]["/api/v3/process/{process_id}/whep"]["post"]
        assert whep["parameters"][0]["name"] == "process_id"
        assert whep["security"] == [{"ApiKeyAuth": []}]
        assert "application/sdp" in whep["requestBody"]["content"]
        assert {"201", "406", "409", "509"} <= set(whep["responses"])
        add = spec["paths"]["/api/v3/process"]["post"]
        assert add["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ProcessConfig"}
        assert "input" in spec["components"]["schemas"]["ProcessConfig"]["properties"]
        query = spec["paths"]["/api/v3/metrics"]["post"]
        schema = query["requestBody"]["content"]["application/json"]["schema"]
        assert "timerange_sec" in schema["properties"]
        assert "security" not in spec["paths"]["/ping"]["get"]
        odd = spec["paths"]["/odd/{n}/items/{rest}"]["get"]
        assert odd["summary"] == "Odd items." and odd["tags"] == ["odd"]
        assert [(p["name"], p["schema"]["type"]) for p in odd["parameters"]] == [
            ("n", "integer"), ("rest", "string")]
        assert set(spec["paths"]["/odd/a"]) == set(spec["paths"]["/odd/b"]) == {"put", "delete"}
        assert list(spec["paths"]["/odd/only-options"]) == ["options"]

        ui = await api.get("/api/swagger/index.html")
        assert ui.status_code == 200 and "swagger-ui-bundle.js" in ui.text
        bundle = await api.get("/api/swagger/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and len(bundle.content) > 100_000
        assert (await api.get("/api/swagger/..%2Fsecret")).status_code == 404


@pytest.mark.slow
async def test_metrics_describe_query_and_history(ffmpeg: str, tmp_path: Path) -> None:
    overrides = {"metrics.enable": True, "metrics.interval_seconds": 1,
                 "metrics.range_seconds": 30}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.ts").write_bytes(b"x" * 1234)
    async with server(tmp_path, ffmpeg, **overrides) as srv:
        api = Api(srv.url)
        described = (await api.get("/api/v3/metrics")).json()
        names = [d["name"] for d in described]
        assert names == sorted(names)
        for name in ("uptime_uptime", "cpu_idle", "mem_total", "restream_process",
                     "session_active", "filesystem_usage"):
            assert name in names
        proc = next(d for d in described if d["name"] == "restream_process")
        assert proc["labels"] == ["processid", "state", "order", "name"]

        body = {"metrics": [{"name": "mem_total"}, {"name": "session_active",
                                                     "labels": {"collector": "^web"}}]}
        now = (await api.post("/api/v3/metrics", body)).json()
        assert now["timerange_sec"] == 30 and now["interval_sec"] == 1
        by_name = {m["name"]: m for m in now["metrics"]}
        assert by_name["mem_total"]["values"][0][1] > 0
        assert by_name["mem_total"]["labels"] is None  # as Core (no labels -> null)
        assert by_name["session_active"]["labels"] == {"collector": "webrtc"}
        assert len(now["metrics"]) == 2
        too_many = {"metrics": [{"name": "mem_total"}] * (MAX_QUERY_METRICS + 1)}
        body = assert_error(await api.post("/api/v3/metrics", too_many), 400)
        assert body["details"] == [f"at most {MAX_QUERY_METRICS} metrics per query"]
        # the Restreamer UI's system panel query (restreamer.js _getResources)
        ui_names = ["uptime_uptime", "cpu_ncpu", "cpu_idle", "mem_total", "mem_free",
                    "filesystem_limit", "filesystem_usage", "session_limit", "session_active",
                    "session_txbitrate", "session_maxtxbitrate"]
        ui = (await api.post("/api/v3/metrics", {"metrics": [{"name": n} for n in ui_names]}
                             )).json()
        assert {m["name"] for m in ui["metrics"]} == set(ui_names)
        hls_active = [m for m in ui["metrics"] if m["name"] == "session_active"
                      and m["labels"] == {"collector": "hls"}]
        assert hls_active and hls_active[0]["values"][0][1] == 0
        fs_query = {"metrics": [{"name": "filesystem_usage", "labels": {"name": "diskfs"}},
                                {"name": "filesystem_files", "labels": {"name": "diskfs"}}]}
        with trio.fail_after(20):  # the first walk runs in a worker thread at start
            while True:
                fs = (await api.post("/api/v3/metrics", fs_query)).json()
                found = {m["name"]: m["values"][0][1] for m in fs["metrics"]}
                if found.get("filesystem_files"):
                    break
                await trio.sleep(0.2)
        assert found == {"filesystem_usage": 1234, "filesystem_files": 1}

        query = {"timerange_sec": 10, "interval_sec": 1, "metrics": [{"name": "uptime_uptime"}]}
        with trio.fail_after(30):  # the sampler adds one snapshot a second
            while True:
                hist = (await api.post("/api/v3/metrics", query)).json()
                values = hist["metrics"][0]["values"] if hist["metrics"] else []
                if len(values) >= 3:
                    break
                await trio.sleep(0.5)
        assert len(values) <= 10
        uptimes = [v for _, v in values]
        assert uptimes == sorted(uptimes) and uptimes[-1] > uptimes[0]

        for bad in ({"timerange_sec": "x"}, [], {"metrics": [{"labels": {"a": 1}}]},
                    {"timerange_sec": 10**9, "interval_sec": 1}):
            resp = await api.post("/api/v3/metrics", bad)
            assert resp.status_code == 400, bad
            assert resp.json()["message"] == "Invalid JSON"
        assert (await api.request("POST", "/api/v3/metrics", content=b"{")).status_code == 400


MEMFS_AUTH = ("writer", "secret")


def hls_files(data: Path, segment_size: int = 188 * 100) -> None:
    """A master playlist, a media playlist and one segment on the disk mount (``/``)."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "main.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlive.m3u8\n")
    (data / "live.m3u8").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg0.ts\n")
    (data / "seg0.ts").write_bytes(b"\x47" * segment_size)


async def test_hls_sessions_and_limit(ffmpeg: str, tmp_path: Path) -> None:
    """Core's HLS middleware on the real mounts: disk files read through ``/``, uploads
    to ``/memfs``: playlist rewrite, sessions, 403/509 as Core, ingress accounting."""
    hls_files(tmp_path / "data")
    overrides = {**OPEN, "sessions.max_sessions": 1,
                 "storage.memory.auth.username": MEMFS_AUTH[0],
                 "storage.memory.auth.password": MEMFS_AUTH[1]}
    async with server(tmp_path, ffmpeg, **overrides) as srv:
        api = Api(srv.url)
        # FFmpeg asks for "Range: bytes=0-": a playlist is answered whole (Core: no Range)
        master = await api.get("/main.m3u8", headers={"Range": "bytes=0-10"})
        assert master.status_code == 200
        assert master.headers["cache-control"] == "private"
        assert int(master.headers["content-length"]) == len(master.content)
        variant = [line for line in master.text.splitlines() if line.startswith("live.m3u8")]
        assert len(variant) == 1
        sid = variant[0].split("session=")[1]
        assert SESSION_ID.match(sid)
        # a malformed session id is refused (Core: 403) while a slot is free
        forbidden = await api.get("/live.m3u8?session=bad")
        assert forbidden.status_code == 403
        assert forbidden.json() == {"code": 403, "message": "Forbidden", "details": ["Forbidden"]}
        # a media playlist without a session id becomes a master pointing back at itself
        bare = await api.get("/live.m3u8?x=1")
        assert bare.status_code == 200
        lines = bare.text.splitlines()
        assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-STREAM-INF:BANDWIDTH=1024"]
        assert len(lines) == 4 and lines[3].startswith("live.m3u8?session=")
        assert SESSION_ID.match(lines[3][18:40]) and lines[3].endswith("&x=1")
        media = await api.get(f"/{variant[0]}")
        assert media.status_code == 200
        assert f"seg0.ts?session={sid}" in media.text
        seg = await api.get(f"/seg0.ts?session={sid}")
        assert seg.status_code == 200 and seg.content == b"\x47" * 188 * 100
        part = await api.get(f"/seg0.ts?session={sid}", headers={"Range": "bytes=188-375"})
        assert part.status_code == 206 and len(part.content) == 188  # segments: as stored

        active = (await api.get("/api/v3/session/active?collectors=hls")).json()
        assert [s["id"] for s in active["hls"]] == [sid]
        assert active["hls"][0]["reference"] == "live"
        assert active["hls"][0]["local"] == "/live.m3u8"
        assert active["hls"][0]["extra"].startswith("[127.0.0.0] ")
        assert active["hls"][0]["bytes_tx"] > 188 * 100

        # the public widget counts the viewers of a process by its reference (as Core)
        process = {"id": "p1", "reference": "live",
                   "input": [{"id": "in", "address": "testsrc", "options": ["-f", "lavfi"]}],
                   "output": [{"id": "out", "address": "-", "options": ["-f", "null"]}]}
        assert (await api.post("/api/v3/process", process)).status_code == 200
        widget = await api.get("/api/v3/widget/process/p1")
        assert widget.json() == {"current_sessions": 1, "total_sessions": 0, "uptime": 0}
        assert (await api.get("/api/v3/widget/process/nope")).status_code == 404

        # the one allowed session is taken: a new playlist viewer gets Core's 509
        refused = await api.get("/main.m3u8")
        assert refused.status_code == 509
        assert refused.json() == {"code": 509, "message": "Bandwith limit exceeded",
                                  "details": ["Number of sessions exceeded"]}
        assert (await api.get("/live.m3u8?session=bad")).status_code == 509  # limits first
        # the known session goes on
        assert (await api.get(f"/{variant[0]}")).status_code == 200
        # other files on the mounts are not HLS: untouched, not refused
        assert (await api.get("/nothing.txt")).status_code == 404

        # ingest, as FFmpeg's HLS muxer does it: chunked PUTs of segments, then the playlist
        async def chunks(data: bytes) -> Any:
            for i in range(0, len(data), 1000):
                yield data[i:i + 1000]

        async with httpx.AsyncClient(base_url=srv.url, auth=MEMFS_AUTH) as http:
            seg = await http.put("/memfs/up0.ts", content=chunks(b"\x47" * 188 * 50))
            assert seg.status_code == 201 and "content-length" not in seg.request.headers
            playlist = b"#EXTM3U\n#EXTINF:2,\nup0.ts\n"
            assert (await http.put("/memfs/up.m3u8", content=chunks(playlist))).status_code == 201
            # refused uploads are not ingress
            refused_put = await http.put("/memfs/nope.m3u8", content=b"x", auth=("a", "b"))
            assert refused_put.status_code == 401
        ingest = (await api.get("/api/v3/session/active?collectors=hlsingress")).json()
        assert [s["id"] for s in ingest["hlsingress"]] == ["/memfs/up.m3u8"]
        assert ingest["hlsingress"][0]["reference"] == "up"
        assert ingest["hlsingress"][0]["bytes_rx"] > 188 * 50 + len(playlist)
        # the upload is served from memfs, rewritten for the known viewer
        assert (await api.get(f"/memfs/up.m3u8?session={sid}")).text.endswith(
            f"up0.ts?session={sid}\n")

        summary = (await api.get("/api/v3/session?collectors=hls,webrtc")).json()
        assert set(summary) == {"hls", "webrtc"}
        assert summary["hls"]["active"]["sessions"] == 1
        assert summary["hls"]["active"]["max_sessions"] == 1


async def test_hls_bitrate_limit_uses_the_ingest_bitrate(ffmpeg: str, tmp_path: Path) -> None:
    """Core's bitrate rule on the real mounts: a new player of a stream uploaded at a high
    rate (hlsingress) gets 509 when 2 x its bitrate passes sessions.max_bitrate_mbit; a
    playlist nobody uploads (a disk file) has no bitrate and is admitted."""
    hls_files(tmp_path / "data")
    overrides = {**OPEN, "sessions.max_bitrate_mbit": 1,
                 "storage.memory.auth.username": MEMFS_AUTH[0],
                 "storage.memory.auth.password": MEMFS_AUTH[1]}
    async with server(tmp_path, ffmpeg, **overrides) as srv:
        api = Api(srv.url)
        async with httpx.AsyncClient(base_url=srv.url, auth=MEMFS_AUTH) as http:
            # 2 MB of segments within a second: ~1.6 Mbit/s over Core's 10 s window
            for i in range(4):
                seg = await http.put(f"/memfs/fast{i}.ts", content=b"\x47" * 500_000)
                assert seg.status_code == 201
            playlist = "#EXTM3U\n" + "".join(f"#EXTINF:1,\nfast{i}.ts\n" for i in range(4))
            assert (await http.put("/memfs/fast.m3u8", content=playlist)).status_code == 201
        refused = await api.get("/memfs/fast.m3u8")
        assert refused.status_code == 509, refused.text
        assert refused.json() == {"code": 509, "message": "Bandwith limit exceeded",
                                  "details": ["Bitrate limit exceeded"]}
        assert (await api.get("/main.m3u8")).status_code == 200
        ingest = (await api.get("/api/v3/session/active?collectors=hlsingress")).json()
        assert ingest["hlsingress"][0]["bytes_rx"] > 2_000_000


async def test_hls_ignored_clients_get_the_files_unchanged(ffmpeg: str, tmp_path: Path) -> None:
    """Default ignore list (Core's): players on 127.0.0.1 are neither rewritten nor counted."""
    hls_files(tmp_path / "data")
    async with server(tmp_path, ffmpeg, **{"sessions.max_sessions": 1}) as srv:
        api = Api(srv.url)
        for _ in range(3):  # more viewers than the limit: not limited either
            master = await api.get("/main.m3u8")
            assert master.status_code == 200
            assert master.text == (tmp_path / "data" / "main.m3u8").read_text()
        active = (await api.get("/api/v3/session/active?collectors=hls")).json()
        assert active == {"hls": []}


@pytest.mark.slow
async def test_webrtc_viewers_in_prometheus_and_sessions(ffmpeg: str, tmp_path: Path) -> None:
    overrides = {**OPEN, "webrtc.enable": True, "metrics.enable_prometheus": True,
                 "sessions.max_sessions": 2}
    results: list[dict[str, Any]] = []
    async with server(tmp_path, ffmpeg, **overrides) as srv:
        api = Api(srv.url)
        async with trio.open_nursery() as nursery:
            assert (await api.post("/api/v3/process", webrtc_process("cam"))).status_code == 200
            await wait_live(api, "cam")

            async def viewer() -> None:
                results.append(await run_aiortc_viewer(
                    ["--whep", f"{srv.url}/api/v3/process/cam/whep", "--duration", "15"],
                    timeout=90))

            nursery.start_soon(viewer)
            nursery.start_soon(viewer)

            async def metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
                resp = await api.get("/metrics")
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/plain")
                return scrape(resp.text)

            with trio.fail_after(60):
                while True:
                    first = await metrics()
                    if value(first, "webrtc_viewers", process="cam", state="connected") == 2:
                        break
                    await trio.sleep(0.3)
            active1 = (await api.get("/api/v3/session/active?collectors=webrtc")).json()["webrtc"]
            assert len(active1) == 2

            # a third viewer is refused before anything is allocated
            refused = await whep_offer(api, "cam", OFFER)
            assert refused.status_code == 509, refused.text
            assert refused.json()["message"] == "Number of sessions exceeded"
            state = (await api.get("/api/v3/process/cam/state")).json()
            assert len(state["webrtc"]["viewers"]) == 2

            await trio.sleep(3)
            second = await metrics()
            active2 = (await api.get("/api/v3/session/active?collectors=webrtc")).json()["webrtc"]
            by_id = {s["id"]: s for s in active1}
            for s in active2:
                assert s["bytes_tx"] > by_id[s["id"]]["bytes_tx"] >= 0
                assert s["reference"] == "cam"
                assert s["local"] == "/api/v3/process/cam/whep"
                assert s["remote"] == "127.0.0.1"
                assert s["bandwidth_tx_kbit"] > 0
                assert s["bytes_rx"] > 0  # the viewer's RTCP (receiver reports)

            widget = (await api.get("/api/v3/widget/process/cam")).json()
            assert widget["current_sessions"] == 2 and widget["uptime"] > 0
            assert value(second, "ffmpeg_process", process="cam", name="frame") > \
                value(first, "ffmpeg_process", process="cam", name="frame") > 0
            assert value(second, "webrtc_sent_bytes_total", process="cam") > \
                value(first, "webrtc_sent_bytes_total", process="cam") > 0
            assert value(second, "webrtc_sent_packets_total", process="cam") > \
                value(first, "webrtc_sent_packets_total", process="cam")
            assert value(second, "session_active", collector="webrtc") == 2
            assert value(second, "session_tx_bytes", collector="webrtc") > \
                value(first, "session_tx_bytes", collector="webrtc")
            assert value(second, "webrtc_setup_seconds_count") >= 2
            assert value(second, "ffmpeg_states", state="running") >= 1
            assert value(second, "ffmpeg_states_total", state="starting") >= 1
            assert value(second, "ffmpeg_process_states", process="cam", state="running") >= 1
            assert value(second, "uptime_seconds") >= 0
            assert value(second, "webrtc_viewer_fraction_lost", process="cam", stat="max") <= 1
            # receiver reports from aiortc carry LSR/DLSR: the server knows the round trip
            assert 0 <= value(second, "webrtc_viewer_rtt_seconds", process="cam", stat="max") < 1
            history = (await api.post("/api/v3/metrics", {"metrics": [
                {"name": "webrtc_viewers", "labels": {"processid": "^cam$"}},
                {"name": "webrtc_txbytes"}]})).json()
            current = {m["name"]: m["values"][0][1] for m in history["metrics"]}
            assert current["webrtc_viewers"] == 2
            assert current["webrtc_txbytes"] >= value(second, "webrtc_sent_bytes_total",
                                                      process="cam")
            viewers = (await api.get("/api/v3/process/cam/state")).json()["webrtc"]["viewers"]
            reports = [v["receiver_reports"]["video"] for v in viewers
                       if "video" in v["receiver_reports"]]
            assert reports, viewers
            assert all(0 <= r["fraction_lost"] <= 1 and r["jitter_seconds"] >= 0 for r in reports)

        # the viewers said goodbye (WHEP DELETE): their sessions went into the history
        with trio.fail_after(20):
            while True:
                summary = (await api.get("/api/v3/session?collectors=webrtc")).json()["webrtc"]
                if summary["active"]["sessions"] == 0:
                    break
                await trio.sleep(0.5)
        assert summary["summary"]["sessions"] == 2
        assert summary["summary"]["reference"]["cam"]["sessions"] == 2
        assert summary["summary"]["remote"]["127.0.0.1"]["sessions"] == 2
        # counters keep what the closed viewers were sent (they never go back)
        await trio.sleep(1.1)  # past the exposition cache
        after = scrape((await api.get("/metrics")).text)
        assert value(after, "webrtc_viewers", process="cam", state="connected") == 0
        assert value(after, "webrtc_viewer_sessions_total", process="cam") == 2
        assert value(after, "webrtc_sent_bytes_total", process="cam") >= \
            value(second, "webrtc_sent_bytes_total", process="cam")
        assert value(after, "session_total", collector="webrtc") == 2

    for result in results:
        assert result["error"] is None, result
        assert result["video_frames"] > 50, result


OFFER = """v=0\r
o=- 1 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0\r
m=video 9 UDP/TLS/RTP/SAVPF 102\r
c=IN IP4 0.0.0.0\r
a=mid:0\r
a=recvonly\r
a=rtcp-mux\r
a=ice-ufrag:abcd\r
a=ice-pwd:abcdefghijklmnopqrstuvwx\r
a=fingerprint:sha-256 {fp}\r
a=setup:actpass\r
a=rtpmap:102 H264/90000\r
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r
""".format(fp=":".join(["AB"] * 32))


async def test_auth_and_session_history_survives_a_restart(ffmpeg: str, tmp_path: Path) -> None:
    hls_files(tmp_path / "data", segment_size=188)
    overrides = {**OPEN, "sessions.persist": True, "sessions.session_timeout_sec": 1,
                 "metrics.enable_prometheus": True, "api.auth.enable": True,
                 "api.auth.username": "admin", "api.auth.password": "secret"}
    async with server(tmp_path, ffmpeg, **overrides) as srv:
        anon = Api(srv.url)
        assert (await anon.get("/metrics")).status_code == 200  # no auth, as Core
        assert (await anon.get("/api/swagger/doc.json")).status_code == 200
        assert (await anon.get("/api/v3/session")).status_code == 401
        assert (await anon.get("/api/v3/metrics")).status_code == 401
        assert (await anon.get("/api/v3/widget/process/none")).status_code == 404  # public
        login = await anon.post("/api/login", {"username": "admin", "password": "secret"})
        api = Api(srv.url, login.json()["access_token"])
        master = await anon.get("/main.m3u8")
        variant = next(line for line in master.text.splitlines() if line.startswith("live"))
        sid = variant.split("session=")[1]
        await anon.get(f"/{variant}")
        await anon.get(f"/seg0.ts?session={sid}")
        # no request for session_timeout_sec: the session ends and goes into the history
        with trio.fail_after(20):
            while True:
                summary = (await api.get("/api/v3/session?collectors=hls")).json()["hls"]
                if summary["summary"]["sessions"] == 1:
                    break
                await trio.sleep(0.3)
        assert summary["active"]["sessions"] == 0
    stored = json.loads((tmp_path / "db" / "sessions" / "hls.json").read_text())
    assert [v["reference"] for v in stored["sessions"].values()] == ["live"]
    async with server(tmp_path, ffmpeg, **{**overrides, "api.auth.enable": False}) as srv:
        summary = (await Api(srv.url).get("/api/v3/session?collectors=hls")).json()["hls"]
        assert summary["summary"]["sessions"] == 1
        assert summary["summary"]["reference"]["live"]["sessions"] == 1


@pytest.mark.slow
async def test_webrtc_bitrate_limit_answers_509(ffmpeg: str, tmp_path: Path) -> None:
    overrides = {**OPEN, "webrtc.enable": True, "sessions.max_bitrate_mbit": 1}
    noisy = webrtc_process("noisy", input=[
        {"id": "video", "address": "testsrc2=size=320x240:rate=25,noise=alls=60:allf=t",
         "options": ["-re", "-f", "lavfi"]}])
    async with server(tmp_path, ffmpeg, **overrides) as srv:
        api = Api(srv.url)
        assert (await api.post("/api/v3/process", noisy)).status_code == 200
        await wait_live(api, "noisy")
        # wait until the source's measured input rate makes one viewer (2x, as Core counts
        # the initial peak) exceed the 1 Mbit/s limit
        with trio.fail_after(30):
            last: tuple[float, int] | None = None
            while True:
                state = (await api.get("/api/v3/process/noisy/state")).json()
                received = sum(t["bytes"] for t in state["webrtc"]["source"]["tracks"].values())
                now = trio.current_time()
                if last is not None and now - last[0] >= 2:
                    if (received - last[1]) * 8 / (now - last[0]) > 0.6 * 1024 * 1024:
                        break
                    last = (now, received)
                elif last is None:
                    last = (now, received)
                await trio.sleep(0.5)
        await trio.sleep(1.5)  # the server measures it once a second too
        refused = await whep_offer(api, "noisy", OFFER)
        assert refused.status_code == 509, refused.text
        assert refused.json()["message"] == "Bitrate limit exceeded"
        state = (await api.get("/api/v3/process/noisy/state")).json()
        assert state["webrtc"]["viewers"] == []


async def test_disabled_sessions_and_prometheus(ffmpeg: str, tmp_path: Path) -> None:
    async with server(tmp_path, ffmpeg, **{"sessions.enable": False}) as srv:
        api = Api(srv.url)
        assert (await api.get("/metrics")).status_code == 404  # metrics.enable_prometheus off
        summary = (await api.get("/api/v3/session")).json()
        assert list(summary) == [""]  # Core splits the missing parameter into [""]
        assert summary[""]["active"]["sessions"] == 0
        assert (await api.get("/api/v3/session/active?collectors=hls")).json() == {"hls": []}
        query = await api.post("/api/v3/metrics", {"timerange_sec": 60, "interval_sec": 1,
                                                   "metrics": [{"name": "uptime_uptime"}]})
        assert query.json() == {"timerange_sec": 0, "interval_sec": 0, "metrics": []}


def test_metrics_settings_are_checked(tmp_path: Path) -> None:
    from trio_core.config.settings import SettingError
    from trio_core.observability.monitor import Monitor
    from trio_core.observability.subsystem import metrics_history

    config = make_config(tmp_path, "ffmpeg", **{"metrics.enable": True,
                                                "metrics.range_seconds": 10,
                                                "metrics.interval_seconds": 20})
    with pytest.raises(SettingError, match="metrics.interval_seconds"):
        metrics_history(config, Monitor())


async def test_concurrent_offers_cannot_overshoot_max_sessions(ffmpeg: str, tmp_path: Path
                                                                ) -> None:
    overrides = {**OPEN, "webrtc.enable": True, "sessions.max_sessions": 1}
    async with server(tmp_path, ffmpeg, **overrides) as srv:
        api = Api(srv.url)
        assert (await api.post("/api/v3/process", webrtc_process("cam"))).status_code == 200
        await wait_live(api, "cam")
        # offers that fail after admission give their slot back
        for _ in range(3):
            bad = await whep_offer(api, "cam", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n")
            assert bad.status_code == 400, bad.text
        statuses: list[int] = []

        async def offer() -> None:
            statuses.append((await whep_offer(api, "cam", OFFER)).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(offer)
        assert sorted(statuses) == [201, 509, 509, 509, 509, 509], statuses
        state = (await api.get("/api/v3/process/cam/state")).json()
        assert len(state["webrtc"]["viewers"]) == 1


async def test_hls_from_a_real_ffmpeg_writer_into_memfs(ffmpeg: str, tmp_path: Path) -> None:
    """A process writes HLS to ``{memfs}`` (FFmpeg's chunked PUTs through the loopback
    endpoint) -> ``hlsingress``; an independent FFmpeg plays it from the public ``/memfs``
    -> one ``hls`` session whose bytes grow."""
    overrides = {**OPEN, "storage.memory.auth.username": MEMFS_AUTH[0],
                 "storage.memory.auth.password": MEMFS_AUTH[1]}
    async with server(tmp_path, ffmpeg, **overrides) as srv, trio.open_nursery() as nursery:
        api = Api(srv.url)
        process = {
            "id": "cam", "reference": "live",
            "input": [{"id": "in", "address": "testsrc=size=160x120:rate=10",
                       "options": ["-re", "-f", "lavfi"]}],
            "output": [{"id": "hls", "address": "{memfs}/live.m3u8", "options": [
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-b:v", "200k",
                "-threads", "1", "-f", "hls", "-hls_time", "1", "-hls_list_size", "4",
                "-hls_flags", "delete_segments", "-master_pl_name", "main.m3u8",
                "-method", "PUT"]}],
            "autostart": True, "reconnect": False}
        assert (await api.post("/api/v3/process", process)).status_code == 200

        async def ingested() -> bool:
            ingest = (await api.get("/api/v3/session/active?collectors=hlsingress")).json()
            streams = {s["id"]: s for s in ingest["hlsingress"]}
            return streams.get("/memfs/live.m3u8", {}).get("bytes_rx", 0) > 10_000

        await wait_for(ingested, timeout=60)  # playlists plus the segments they list
        assert (await api.get("/api/v3/session/active?collectors=hls")).json() == {"hls": []}

        player = [ffmpeg, "-nostdin", "-loglevel", "error", "-re",
                  "-i", f"{srv.url}/memfs/main.m3u8", "-t", "30", "-f", "null", "-"]
        nursery.start_soon(partial(trio.run_process, player, check=False))

        async def session_bytes() -> tuple[str, int] | None:
            active = (await api.get("/api/v3/session/active?collectors=hls")).json()["hls"]
            if len(active) != 1 or active[0]["bytes_tx"] < 188 * 10:
                return None
            return active[0]["id"], active[0]["bytes_tx"]

        sid, first = await wait_for(session_bytes, timeout=60)
        assert SESSION_ID.match(sid)

        async def grown() -> dict[str, Any] | None:
            active = (await api.get("/api/v3/session/active?collectors=hls")).json()["hls"]
            return active[0] if [s["id"] for s in active] == [sid] and \
                active[0]["bytes_tx"] > first + 10_000 else None

        session = await wait_for(grown, timeout=60)
        assert session["reference"] == "live"
        assert session["local"] == "/memfs/live.m3u8"
        summary = (await api.get("/api/v3/session?collectors=hls")).json()["hls"]
        assert summary["active"]["sessions"] == 1
        nursery.cancel_scope.cancel()
