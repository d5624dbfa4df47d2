"""The edge relay's cost (issue 20): ``python -m bench.cluster --relay 50 [--seconds 10]``.

Starts Debian's ``redis-server`` and two trio-core nodes (``python -m trio_core`` child
processes on loopback ports, ``cluster.enable`` + ``cluster.relay``, WebRTC on 127.0.0.1),
creates one WebRTC process (``bench.product.process_config``: lavfi testsrc2 + sine, the
server's FFmpeg legs encode H264 + Opus) and finds its owner (the *origin*); the other node is
the *edge*. Load viewers (``bench.viewer``: real ICE/DTLS/SRTP receivers that count packets)
then play, one phase after the other, over ``seconds`` each:

1. no viewer — the origin's idle CPU;
2. one viewer on the origin;
3. ``viewers`` viewers on the origin — origin CPU per viewer-packet;
4. ``viewers`` viewers on the edge — edge CPU per viewer-packet (its upstream receive path
   included), and the origin's CPU meanwhile: it serves the edge as one viewer.

CPU is each node's own process time (``/proc/<pid>/stat``, FFmpeg children not counted)
divided by the packets the viewers received. Targets: edge / origin CPU per viewer-packet
≤ 1.1; the origin's extra CPU for one edge ≈ its extra CPU for one viewer. The machine may be
shared (the numbers are then noisy; CPU per packet is the least sensitive figure).
Everything started here is stopped before it returns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import trio

from bench.common import free_tcp_port, proc_sample
from bench.servers import WhepClientMixin
from bench.viewer import ViewerPool

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Phase:
    name: str
    viewers: int
    connected: int = 0
    packets: int = 0
    seconds: float = 0.0
    origin_cpu: float = 0.0
    edge_cpu: float = 0.0

    def per_packet(self, cpu: float) -> float | None:
        return cpu / self.packets * 1e6 if self.packets else None


def _received(pool: ViewerPool) -> int:
    return sum(t.received for v in pool.viewers for t in v.tracks.values())


async def _phase(phase: Phase, url: str | None, seconds: float, http: httpx.AsyncClient,
                 origin: int, edge: int) -> None:
    async with trio.open_nursery() as inner:
        pool = ViewerPool(probes=0)
        await inner.start(pool.run)
        whep = WhepClientMixin()
        whep.http = http
        for _ in range(phase.viewers if url else 0):
            v = pool.new_viewer()
            await whep.whep_connect(url, v)  # type: ignore[arg-type]
            if await pool.establish(v):
                phase.connected += 1
        await trio.sleep(1.5)
        o0, e0, p0, t0 = proc_sample(origin), proc_sample(edge), _received(pool), time.monotonic()
        await trio.sleep(seconds)
        o1, e1, p1, t1 = proc_sample(origin), proc_sample(edge), _received(pool), time.monotonic()
        assert o0 and o1 and e0 and e1
        phase.origin_cpu, phase.edge_cpu = o1.cpu - o0.cpu, e1.cpu - e0.cpu
        phase.packets, phase.seconds = p1 - p0, t1 - t0
        for v in pool.viewers:
            await whep.whep_disconnect(v)
        inner.cancel_scope.cancel()
    await trio.sleep(7.0)  # the edge's upstream lingers 5 s after its last viewer


async def run(ffmpeg: str, viewers: int, seconds: float, size: str) -> list[Phase]:
    from bench.product import PROCESS_ID, process_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    rport = free_tcp_port()
    redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port",
                              str(rport), "--bind", "127.0.0.1", "--save", "", "--dir",
                              str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    phases = [Phase("no viewer", 0), Phase("1 viewer on the origin", 1),
              Phase(f"{viewers} viewers on the origin", viewers),
              Phase(f"{viewers} viewers on the edge", viewers)]
    try:
        async with httpx.AsyncClient(timeout=20) as http, trio.open_nursery() as nursery:
            nodes: dict[str, tuple[int, str]] = {}
            for name in ("n1", "n2"):
                port = free_tcp_port()
                (tmp / name / "tmp").mkdir(parents=True)
                env = {k: v for k, v in os.environ.items() if not k.startswith("CORE_")}
                env.update({
                    "CORE_API_ADDRESS": f"127.0.0.1:{port}",
                    "CORE_DB_DIR": str(tmp / name / "db"),
                    "CORE_STORAGE_DISK_DIR": str(tmp / name / "data"),
                    "CORE_FFMPEG_BINARY": ffmpeg, "CORE_DEMO_ENABLE": "false",
                    "CORE_WEBRTC_ENABLE": "true", "CORE_WEBRTC_BIND_ADDRESS": "127.0.0.1",
                    "CORE_WEBRTC_MAX_PENDING_PER_CLIENT": "0",
                    "CORE_SESSIONS_ENABLE": "false", "CORE_LOG_LEVEL": "warning",
                    "TMPDIR": str(tmp / name / "tmp"), "PYTHONPATH": str(ROOT),
                    "CORE_CLUSTER_ENABLE": "true", "CORE_CLUSTER_RELAY": "true",
                    "CORE_CLUSTER_REDIS_URL": f"redis://127.0.0.1:{rport}/0",
                    "CORE_CLUSTER_NODE_ID": name,
                    "CORE_CLUSTER_ADDRESS": f"http://127.0.0.1:{port}",
                    "CORE_CLUSTER_MAX_CPU_USAGE": "0", "CORE_CLUSTER_MAX_MEMORY_USAGE": "0"})
                log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115
                proc = await nursery.start(partial(
                    trio.run_process, [sys.executable, "-m", "trio_core"], env=env,
                    cwd=str(tmp), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    check=False))
                nodes[name] = (proc.pid, f"http://127.0.0.1:{port}")
            for _, base in nodes.values():
                with trio.fail_after(40):
                    while True:
                        try:
                            if (await http.get(base + "/api", timeout=1)).status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        await trio.sleep(0.2)
            base = nodes["n1"][1]
            resp = await http.post(base + "/api/v3/process", json=process_config(size))
            if resp.status_code != 200:
                raise RuntimeError(f"create process: {resp.status_code} {resp.text[:200]}")
            with trio.fail_after(40):
                while True:
                    owner = (await http.get(base + "/api/v3/cluster/db/map/process")).json() \
                        .get(PROCESS_ID)
                    state = (await http.get(f"{base}/api/v3/process/{PROCESS_ID}/state")).json()
                    if owner and (state.get("webrtc") or {}).get("live"):
                        break
                    await trio.sleep(0.2)
            edge_name = "n2" if owner == "n1" else "n1"
            (opid, obase), (epid, ebase) = nodes[owner], nodes[edge_name]
            await trio.sleep(3.0)
            path = f"/api/v3/process/{PROCESS_ID}/whep"
            for phase, url in zip(phases, (None, obase + path, obase + path, ebase + path),
                                  strict=True):
                await _phase(phase, url, seconds, http, opid, epid)
                print(f"{phase.name}: {phase.connected} connected, {phase.packets} packets, "
                      f"origin {phase.origin_cpu:.2f} s, edge {phase.edge_cpu:.2f} s CPU",
                      flush=True)
            nursery.cancel_scope.cancel()
    finally:
        redis.kill()
        redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return phases


def table(phases: list[Phase], seconds: float) -> str:
    idle, one, direct, edge = phases
    rows = ["| phase | viewers connected | viewer packets/s | origin CPU % | edge CPU % | "
            "CPU µs / viewer-packet |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for p in phases:
        cpu = p.edge_cpu if p is edge else p.origin_cpu
        per = p.per_packet(cpu) if p.connected else None
        rows.append(f"| {p.name} | {p.connected} | {p.packets / p.seconds:.0f} | "
                    f"{100 * p.origin_cpu / p.seconds:.1f} | {100 * p.edge_cpu / p.seconds:.1f} | "
                    f"{'-' if per is None else f'{per:.2f}'} |")
    on_edge, on_origin = edge.per_packet(edge.edge_cpu), direct.per_packet(direct.origin_cpu)
    rows.append("")
    if on_edge and on_origin:
        rows.append(f"CPU per viewer-packet, edge / origin: {on_edge / on_origin:.2f}x "
                    "(target <= 1.1x)")
    base = idle.origin_cpu / idle.seconds
    viewer_cost = one.origin_cpu / one.seconds - base
    edge_cost = edge.origin_cpu / edge.seconds - base
    rows.append(f"origin CPU above idle: one direct viewer {100 * viewer_cost:.2f} %, "
                f"one edge (serving {edge.connected} viewers) {100 * edge_cost:.2f} % "
                "(target: about equal)")
    return "\n".join(rows)
