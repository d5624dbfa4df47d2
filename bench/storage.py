"""``python -m bench.storage``: what memfs sustains on this machine.

Starts the real ``trio-core`` server (a subprocess, ephemeral port, WebRTC off), then

1. **write phase** — one client PUTs files into ``/memfs`` back to back (Basic auth,
   ``--write-kb`` each, replacing a window of 10 names like an HLS writer): files/s and MB/s;
2. **HLS phase** — one FFmpeg process writes HLS to ``{memfs}`` (``-method PUT``, 1 s
   segments, 640x360 libx264 at ``--bitrate``) while ``--readers`` concurrent HLS readers
   (trio + h11 keep-alive connections: poll the playlist every 0.5 s, start 3 segments from
   the live edge, fetch each new segment once, like hls.js) read it for
   ``--seconds``: segments written/s, files and MB served/s, reader errors, and the server's
   CPU (user+system of its process tree, from /proc) per served MB.

Prints one table (markdown). The readers run in this process and share the machine's CPUs
with the server, so the numbers are a floor for the server. ``--quick``: 10 readers, 5 s.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h11
import httpx
import trio

from bench import sut
from bench.common import percentile
from bench.sut import AUTH
from trio_core.ffmpeg.binary import find_ffmpeg


def server_cpu_seconds(pid: int) -> float:
    """CPU of the server process alone (not FFmpeg): utime+stime."""
    tick = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick


async def write_phase(base: str, seconds: float, size_kb: int) -> dict[str, float]:
    payload = os.urandom(size_kb * 1024)
    headers = {"Authorization": "Basic " + base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()}
    count = errors = 0
    async with httpx.AsyncClient(timeout=30) as client:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            resp = await client.put(f"{base}/memfs/bench/w{count % 10}.ts", content=payload,
                                    headers=headers)
            if resp.status_code in (201, 204):
                count += 1
            else:
                errors += 1
        elapsed = time.monotonic() - start
    return {"files_s": count / elapsed, "mb_s": count * len(payload) / elapsed / 1e6,
            "errors": errors}


class H11Client:
    """One keep-alive HTTP/1.1 connection (h11 over a trio stream), GET only: cheaper than
    httpx, so 200 readers in one process load the server rather than themselves."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stream: trio.SocketStream | None = None
        self.conn = h11.Connection(h11.CLIENT)

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.stream is None or self.conn.our_state is not h11.IDLE:
            if self.stream is not None:
                await self.stream.aclose()
            self.stream = await trio.open_tcp_stream(self.host, self.port)
            self.conn = h11.Connection(h11.CLIENT)
        data = self.conn.send(h11.Request(method="GET", target=path,
                                          headers=[("Host", f"{self.host}:{self.port}")]))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        status, body = 0, bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(262144))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.conn.start_next_cycle()
                return status, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                raise OSError("connection closed")

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


class Readers:
    """Live HLS players: poll the playlist every 0.5 s; start at the last 3 segments (as
    hls.js' default live sync), then fetch every new segment once."""

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.errors = 0
        self.kinds: dict[str, int] = {}
        self.segment_seconds: list[float] = []  # each segment fetch, request to last byte

    def error(self, kind: str) -> None:
        self.errors += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    async def reader(self, port: int, path: str, stop: trio.Event) -> None:
        client = H11Client("127.0.0.1", port)
        seen: set[str] | None = None
        base = path.rsplit("/", 1)[0]
        try:
            while not stop.is_set():
                try:
                    status, body = await client.get(path)
                    if status != 200:
                        self.error(f"playlist {status}")
                        continue
                    self.files += 1
                    self.bytes += len(body)
                    variant = re.search(r"^([^#\s]+\.m3u8\?\S+)$", body.decode(), re.M)
                    if variant:  # session accounting: the rewritten playlist names the
                        path = f"{base}/{variant.group(1)}"  # player's own (?session=) one
                        continue
                    names = re.findall(r"^([^#\s].*\.ts(?:\?\S*)?)$", body.decode(), re.M)
                    if seen is None:
                        seen = set(names[:-3])
                    for name in names:
                        if name in seen:
                            continue
                        seen.add(name)
                        t = time.perf_counter()
                        status, segment = await client.get(f"{base}/{name}")
                        if status == 200:
                            self.segment_seconds.append(time.perf_counter() - t)
                            self.files += 1
                            self.bytes += len(segment)
                        else:
                            self.error(f"segment {status}")
                except OSError as exc:
                    self.error(type(exc).__name__)
                    client = H11Client("127.0.0.1", port)
                await trio.sleep(0.5)
        finally:
            await client.aclose()


async def hls_phase(base: str, port: int, server_pid: int, readers: int, seconds: float,
                    bitrate: str) -> dict[str, Any]:
    process = {
        "id": "bench", "options": ["-loglevel", "level+info", "-y"],
        "input": [{"id": "in", "address": "testsrc2=size=640x360:rate=25",
                   "options": ["-re", "-f", "lavfi"]}],
        "output": [{"id": "hls", "address": "{memfs}/bench.m3u8",
                    "options": ["-c:v", "libx264", "-preset", "ultrafast", "-b:v", bitrate,
                                "-g", "25", "-threads", "1", "-f", "hls", "-hls_time", "1",
                                "-hls_list_size", "6", "-hls_flags", "delete_segments",
                                "-hls_delete_threshold", "4",
                                "-method", "PUT"],
                    "cleanup": [{"pattern": "memfs:/bench**", "max_files": 12,
                                 "purge_on_delete": True}]}],
        "autostart": True, "reconnect": True,
    }
    limits = httpx.Limits(max_connections=readers + 10, max_keepalive_connections=readers + 10)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        resp = await client.post(f"{base}/api/v3/process", json=process)
        resp.raise_for_status()
        with trio.fail_after(60):
            while (await client.get(f"{base}/memfs/bench.m3u8")).status_code != 200:
                await trio.sleep(0.5)
        # the file API gives the stored playlist (the mount rewrites it for counted players)
        first = await client.get(f"{base}/api/v3/fs/mem/bench.m3u8")
        seq0 = max(int(n) for n in re.findall(r"^bench(\d+)\.ts$", first.text, re.M))
        stats = Readers()
        stop = trio.Event()
        cpu0, t0, me0 = server_cpu_seconds(server_pid), time.monotonic(), _own_cpu()
        async with trio.open_nursery() as nursery:
            for _ in range(readers):
                nursery.start_soon(stats.reader, port, "/memfs/bench.m3u8", stop)
            await trio.sleep(seconds)
            stop.set()
        elapsed = time.monotonic() - t0
        cpu = server_cpu_seconds(server_pid) - cpu0
        loadgen = _own_cpu() - me0
        last = await client.get(f"{base}/api/v3/fs/mem/bench.m3u8")
        seq1 = max(int(n) for n in re.findall(r"^bench(\d+)\.ts$", last.text, re.M))
        await client.delete(f"{base}/api/v3/process/bench")
    served_mb = stats.bytes / 1e6
    return {
        "segments_written_s": (seq1 - seq0) / elapsed,
        "files_s": stats.files / elapsed, "mb_s": served_mb / elapsed,
        "errors": stats.errors, "error_kinds": stats.kinds, "server_cpu_pct": 100 * cpu / elapsed,
        "cpu_s_per_mb": cpu / served_mb if served_mb else float("nan"),
        "segment_p99_ms": 1e3 * (percentile(stats.segment_seconds, 99) or float("nan")),
        "loadgen_cpu_pct": 100 * loadgen / elapsed,
    }


def _own_cpu() -> float:
    """CPU seconds of this process (the readers: the load generator)."""
    t = os.times()
    return t.user + t.system


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    spec = sut.trio_core(workdir, find_ffmpeg(""), webrtc=False)
    if args.sessions:  # count the loopback readers as HLS sessions (Core ignores 127.0.0.1)
        spec.env["CORE_SESSIONS_IP_IGNORELIST"] = ""
    try:
        with sut.running(spec) as server:
            write = await write_phase(spec.base, args.write_seconds, args.write_kb)
            hls = await hls_phase(spec.base, spec.port, server.pid, args.readers, args.seconds,
                                  args.bitrate)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"memfs on this machine ({os.cpu_count()} CPUs, readers and server share them)"
          f"{'; HLS session accounting on' if args.sessions else ''}\n")
    print("| phase | value |")
    print("|---|---|")
    print(f"| write: files/s ({args.write_kb} KiB PUTs, one client) | {write['files_s']:.0f} |")
    print(f"| write: MB/s | {write['mb_s']:.1f} |")
    print(f"| write: errors | {write['errors']:.0f} |")
    print(f"| HLS: FFmpeg segments written/s | {hls['segments_written_s']:.2f} |")
    print(f"| HLS: readers | {args.readers} |")
    print(f"| HLS: files served/s | {hls['files_s']:.0f} |")
    print(f"| HLS: MB/s served | {hls['mb_s']:.2f} |")
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(hls["error_kinds"].items()))
    print(f"| HLS: reader errors | {hls['errors']} {('(' + kinds + ')') if kinds else ''} |")
    print(f"| HLS: server CPU % (one core = 100) | {hls['server_cpu_pct']:.0f} |")
    print(f"| HLS: server CPU s per served MB | {hls['cpu_s_per_mb']:.3f} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--write-seconds", type=float, default=5.0)
    parser.add_argument("--write-kb", type=int, default=256)
    parser.add_argument("--bitrate", default="1M")
    parser.add_argument("--quick", action="store_true", help="10 readers, 5 s")
    parser.add_argument("--sessions", action="store_true",
                        help="account the readers as HLS sessions (playlist rewrite)")
    args = parser.parse_args()
    if args.quick:
        args.readers, args.seconds, args.write_seconds = 10, 5.0, 2.0
    return trio.run(main_async, args)


if __name__ == "__main__":
    sys.exit(main())
