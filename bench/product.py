"""The product path: trio-core's own server, its HTTP API and its WHEP endpoint, end to end.

The viewer steps (``bench/runner.py``) measure trio-core's forwarder behind a thin harness, as
Janus and aiortc are measured: the same tee'd RTP in, SRTP out. What a user meets is more:
``trio-core`` (trio_core.httpd + trio_core.web) supervising an FFmpeg process whose WebRTC legs the
server adds itself, and ``POST /api/v3/process/{id}/whep`` answering through the API layer.

``run_product`` starts the real server (``python -m trio_core``, demo off, WebRTC on
127.0.0.1), creates one process over the API (lavfi ``testsrc2`` + ``sine``, ``webrtc.enabled``,
the server's own leg builder transcodes it to H264 baseline + Opus), waits until it is live,
then connects ``viewers`` load viewers **one after another** through the product's WHEP
endpoint (each stays connected, so the n-th POST is answered while n-1 viewers are served)
and records POST→201, →first RTP and →first keyframe per viewer. Then it checks what the
API reports (``state.webrtc.viewers``), ends one session with ``DELETE`` (expects 204) and
stops the process with the viewers still connected: it measures how long until the process
is ``finished``, that no FFmpeg child is left and that no viewer receives RTP afterwards.

Not pinned: the process's FFmpeg is the server's child and would inherit its CPU; the
figures here are latencies of single requests, not throughput.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.common import free_tcp_port, percentile
from bench.servers import WhepClientMixin, make_workdir
from bench.viewer import ViewerPool

ROOT = Path(__file__).resolve().parent.parent
PROCESS_ID = "bench"


@dataclass
class ProductResult:
    viewers: int = 0
    size: str = ""
    connected: int = 0
    post_ms: list[float] = field(default_factory=list)
    first_rtp_ms: list[float] = field(default_factory=list)
    first_keyframe_ms: list[float] = field(default_factory=list)
    state_viewers: int | None = None
    delete_status: int | None = None
    stop_ms: float | None = None
    children_after_stop: int | None = None
    packets_after_stop: int | None = None
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        def p(values: list[float], q: float) -> float | None:
            value = percentile(values, q)
            return None if value is None else round(value, 1)

        return {
            "viewers": self.viewers, "connected": self.connected,
            "post_ms_p50": p(self.post_ms, 50), "post_ms_p95": p(self.post_ms, 95),
            "first_rtp_ms_p50": p(self.first_rtp_ms, 50),
            "first_keyframe_ms_p50": p(self.first_keyframe_ms, 50),
            "first_keyframe_ms_max": round(max(self.first_keyframe_ms), 1)
            if self.first_keyframe_ms else None,
            "state_viewers": self.state_viewers, "delete_status": self.delete_status,
            "stop_ms": None if self.stop_ms is None else round(self.stop_ms),
            "children_after_stop": self.children_after_stop,
            "packets_after_stop": self.packets_after_stop, "error": self.error,
        }


def process_config(size: str) -> dict[str, Any]:
    return {
        "id": PROCESS_ID,
        "input": [
            {"id": "video", "address": f"testsrc2=size={size}:rate=30",
             "options": ["-re", "-f", "lavfi"]},
            {"id": "audio", "address": "sine=frequency=440:sample_rate=48000",
             "options": ["-re", "-f", "lavfi"]},
        ],
        "output": [{"id": "null", "address": "-", "options": ["-map", "0:v", "-f", "null"]}],
        "webrtc": {"enabled": True},
    }


def _children(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return len(f.read().split())
    except OSError:
        return -1


def _received(pool: ViewerPool) -> int:
    return sum(t.received for v in pool.viewers for t in v.tracks.values())


async def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    with trio.move_on_after(timeout):
        while True:
            try:
                value = await predicate()
            except httpx.HTTPError:
                value = None
            if value:
                return value
            await trio.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


async def run_product(ffmpeg: str, *, viewers: int = 20, size: str = "640x360",
                      verbose: bool = True) -> ProductResult:
    """Measure the product path (see module docstring). Never raises: errors land in
    ``ProductResult.error``. Everything started here is stopped before it returns."""
    result = ProductResult(viewers=viewers, size=size)
    workdir = make_workdir()
    port = free_tcp_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CORE_API_ADDRESS": f"127.0.0.1:{port}", "CORE_DEMO_ENABLE": "false",
        "CORE_DB_DIR": str(workdir / "db"), "CORE_STORAGE_DISK_DIR": str(workdir / "data"),
        "CORE_WEBRTC_ENABLE": "true", "CORE_WEBRTC_BIND_ADDRESS": "127.0.0.1",
        "CORE_FFMPEG_BINARY": ffmpeg,
    }
    log = open(workdir / "trio-core-api.log", "wb")  # noqa: SIM115
    pool = ViewerPool(host="127.0.0.1", probes=0)
    whep = WhepClientMixin()
    try:
        async with httpx.AsyncClient(base_url=base) as http, trio.open_nursery() as nursery:
            whep.http = http
            proc = await nursery.start(partial(
                trio.run_process, [sys.executable, "-m", "trio_core"], env=env, cwd=str(workdir),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False))

            async def api_up() -> bool:
                return (await http.get("/api", timeout=1)).status_code == 200

            await _wait_for(api_up, 30, "the API")
            resp = await http.post("/api/v3/process", json=process_config(size))
            if resp.status_code != 200:
                raise RuntimeError(f"create process: {resp.status_code} {resp.text[:200]}")
            state_url = f"/api/v3/process/{PROCESS_ID}/state"

            async def live() -> bool:
                state = (await http.get(state_url, timeout=2)).json()
                return bool((state.get("webrtc") or {}).get("live"))

            await _wait_for(live, 30, "the process to be live")
            await trio.sleep(1.0)
            await nursery.start(pool.run)
            url = f"{base}/api/v3/process/{PROCESS_ID}/whep"
            for _ in range(viewers):
                v = pool.new_viewer()
                await whep.whep_connect(url, v)
                if not await pool.establish(v):
                    continue
                result.connected += 1
                with trio.move_on_after(5):
                    while not v.timing.first_keyframe:
                        await trio.sleep(0.01)
                t = v.timing
                result.post_ms.append((t.signalled - t.start) * 1000)
                if t.first_rtp:
                    result.first_rtp_ms.append((t.first_rtp - t.start) * 1000)
                if t.first_keyframe:
                    result.first_keyframe_ms.append((t.first_keyframe - t.start) * 1000)
            state = (await http.get(state_url)).json()
            result.state_viewers = len(state["webrtc"]["viewers"])
            kicked = next((v for v in pool.viewers if v.session_url), None)
            if kicked is not None and kicked.session_url:
                result.delete_status = (await http.delete(kicked.session_url)).status_code
            t0 = time.perf_counter()
            await http.put(f"/api/v3/process/{PROCESS_ID}/command", json={"command": "stop"})

            async def finished() -> bool:
                return (await http.get(state_url, timeout=2)).json()["exec"] == "finished"

            await _wait_for(finished, 20, "the process to stop")
            result.stop_ms = (time.perf_counter() - t0) * 1000
            result.children_after_stop = _children(proc.pid)
            before = _received(pool)
            await trio.sleep(1.0)
            result.packets_after_stop = _received(pool) - before
            nursery.cancel_scope.cancel()
    except Exception as exc:  # a broken product path is a result, not a crash of the bench
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        log.close()
    if verbose:
        print(f"trio-core API: {result.summary()}", file=sys.stderr, flush=True)
    return result


def markdown(result: ProductResult) -> list[str]:
    """The RESULTS.md section of the product path."""
    s = result.summary()

    def ms(key: str) -> str:
        return "—" if s[key] is None else f"{s[key]:.1f}"

    lines = [
        "## The product path: `trio-core` server, API and WHEP endpoint",
        "",
        f"`bench/product.py`: the real server (`python -m trio_core`), one process created over the "
        f"API (lavfi testsrc2 {result.size} 30 fps + sine, `webrtc.enabled`, the server's own legs: libx264 "
        "baseline + Opus), viewers connected one after another through "
        "`POST /api/v3/process/bench/whep` (each stays connected), then one `DELETE` and a process "
        "stop with the viewers still connected. Not pinned.",
        "",
        "| viewers connected | POST→201 p50 / p95 ms | →1st RTP p50 ms | →1st keyframe p50 / max ms "
        "| `state` viewers | DELETE | stop → `finished` ms | FFmpeg children / RTP packets in the 1 s after stop |",
        "|---|---|---|---|---|---|---|---|",
        f"| {s['connected']}/{s['viewers']} | {ms('post_ms_p50')} / {ms('post_ms_p95')} "
        f"| {ms('first_rtp_ms_p50')} | {ms('first_keyframe_ms_p50')} / {ms('first_keyframe_ms_max')} "
        f"| {s['state_viewers']} | {s['delete_status']} | {s['stop_ms']} "
        f"| {s['children_after_stop']} / {s['packets_after_stop']} |",
        "",
    ]
    if result.error:
        lines += [f"- error: {result.error}", ""]
    return lines
