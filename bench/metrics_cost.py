"""The cost of metrics: server CPU µs per forwarded packet with and without a Prometheus scrape.

``python -m bench.metrics_cost [--viewers 20] [--window 10] [--rounds 3]`` starts the real
server (``python -m trio_core``, ``metrics.enable_prometheus`` and ``metrics.enable`` on,
session accounting on for every client), creates one WebRTC process over the API, connects
``viewers`` load viewers (``bench/viewer.py``) through WHEP and then alternates, on the same
run, windows **without** scraping and windows **with** ``GET /metrics`` once a second
(``rounds`` of each). Per window: server CPU (user+sys from ``/proc/<pid>/stat``, no
children) divided by the packets the viewers received gives µs per forwarded packet; the
table also shows the scrape latency and the exposition size. Everything started is
stopped before it returns.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import httpx
import trio

from bench.common import free_tcp_port, percentile, proc_sample
from bench.product import PROCESS_ID, _received, _wait_for, process_config
from bench.servers import WhepClientMixin, make_workdir
from bench.viewer import ViewerPool
from trio_core.ffmpeg.binary import find_ffmpeg


@dataclass
class Window:
    scrape: bool
    seconds: float
    cpu: float
    packets: int
    scrape_ms: list[float] = field(default_factory=list)
    scrape_bytes: int = 0

    @property
    def us_per_packet(self) -> float:
        return self.cpu * 1e6 / self.packets if self.packets else float("nan")


async def measure(ffmpeg: str, viewers: int, window: float, rounds: int) -> list[Window]:
    workdir = make_workdir()
    port = free_tcp_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CORE_API_ADDRESS": f"127.0.0.1:{port}", "CORE_DEMO_ENABLE": "false",
        "CORE_DB_DIR": str(workdir / "db"), "CORE_STORAGE_DISK_DIR": str(workdir / "data"),
        "CORE_WEBRTC_ENABLE": "true", "CORE_WEBRTC_BIND_ADDRESS": "127.0.0.1",
        "CORE_FFMPEG_BINARY": ffmpeg, "CORE_METRICS_ENABLE_PROMETHEUS": "true",
        "CORE_METRICS_ENABLE": "true", "CORE_SESSIONS_IP_IGNORELIST": "",
    }
    out: list[Window] = []
    log = open(workdir / "trio-core.log", "wb")  # noqa: SIM115
    pool = ViewerPool(host="127.0.0.1", probes=0)
    whep = WhepClientMixin()
    try:
        async with httpx.AsyncClient(base_url=base) as http, trio.open_nursery() as nursery:
            whep.http = http
            proc = await nursery.start(partial(
                trio.run_process, [sys.executable, "-m", "trio_core"], env=env,
                cwd=str(workdir), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                check=False))

            async def api_up() -> bool:
                return (await http.get("/api", timeout=1)).status_code == 200

            await _wait_for(api_up, 30, "the API")
            resp = await http.post("/api/v3/process", json=process_config("640x360"))
            resp.raise_for_status()

            async def live() -> bool:
                state = (await http.get(f"/api/v3/process/{PROCESS_ID}/state")).json()
                return bool((state.get("webrtc") or {}).get("live"))

            await _wait_for(live, 30, "the process to be live")
            await nursery.start(pool.run)
            url = f"{base}/api/v3/process/{PROCESS_ID}/whep"
            for _ in range(viewers):
                v = pool.new_viewer()
                await whep.whep_connect(url, v)
                await pool.establish(v)
            await trio.sleep(3.0)  # settle
            for i in range(2 * rounds):
                scrape = i % 2 == 1
                before, rx0, t0 = proc_sample(proc.pid), _received(pool), time.monotonic()
                w = Window(scrape, 0.0, 0.0, 0)
                deadline = t0 + window
                while time.monotonic() < deadline:
                    if scrape:
                        s0 = time.perf_counter()
                        body = (await http.get("/metrics")).content
                        w.scrape_ms.append((time.perf_counter() - s0) * 1000)
                        w.scrape_bytes = len(body)
                    await trio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                after = proc_sample(proc.pid)
                assert before is not None and after is not None
                w.seconds = time.monotonic() - t0
                w.cpu = after.cpu - before.cpu
                w.packets = _received(pool) - rx0
                out.append(w)
                print(f"window {i + 1}/{2 * rounds}: scrape={scrape} "
                      f"{w.us_per_packet:.2f} us/pkt", file=sys.stderr, flush=True)
            nursery.cancel_scope.cancel()
    finally:
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def table(windows: list[Window], viewers: int) -> str:
    lines = [f"Metrics cost, {viewers} viewers (same server run, windows alternate)", "",
             "| window | /metrics scrape | seconds | packets | server cpu s | us/pkt | "
             "scrape p50 ms | exposition bytes |",
             "|---|---|---|---|---|---|---|---|"]
    for i, w in enumerate(windows, 1):
        p50 = percentile(w.scrape_ms, 50) if w.scrape_ms else None
        lines.append(f"| {i} | {'1 s' if w.scrape else 'off'} | {w.seconds:.1f} | "
                     f"{w.packets} | {w.cpu:.2f} | {w.us_per_packet:.2f} | "
                     f"{'' if p50 is None else f'{p50:.1f}'} | "
                     f"{w.scrape_bytes or ''} |")
    for scrape in (False, True):
        ws = [w for w in windows if w.scrape == scrape]
        cpu = sum(w.cpu for w in ws)
        packets = sum(w.packets for w in ws)
        us = cpu * 1e6 / packets if packets else float("nan")
        lines.append(f"| all | {'1 s' if scrape else 'off'} | "
                     f"{sum(w.seconds for w in ws):.1f} | {packets} | {cpu:.2f} | "
                     f"**{us:.2f}** | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.metrics_cost",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    ffmpeg = find_ffmpeg(os.environ.get("CORE_FFMPEG_BINARY", ""))
    windows = trio.run(measure, ffmpeg, args.viewers, args.window, args.rounds)
    print(table(windows, args.viewers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
