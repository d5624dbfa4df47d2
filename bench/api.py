"""The cost of the process API: ``GET /api/v3/process`` and ``/api/v3/process/{id}/state``.

``python -m bench.api [--processes 50] [--requests 1000] [--seconds 5] [--clients 8]
[--stopped] [--quick]`` starts the real server (``python -m trio_core`` as a child process on a
free loopback port, auth off, no demo), creates ``processes`` processes over the API and
then measures, per endpoint:

* **sequential**: ``requests`` requests one after another on one keep-alive connection:
  p50/p99/max latency and the server's CPU per request (user+sys of the server process from
  ``/proc/<pid>/stat``, no children, over the whole run);
* **concurrent**: ``clients`` keep-alive connections in threads for ``seconds`` seconds:
  requests/s, p50/p99 latency and server CPU per request.

The processes are **running** FFmpegs by default (``-re -f lavfi -i testsrc=size=64x64:rate=5``
-> ``-f null -``, so every process has live progress, which is what a Restreamer UI lists);
``--stopped`` creates them with ``autostart: false`` (the pure cost of the list, no FFmpeg).
The load generator is raw HTTP/1.1 over blocking sockets (no client library); the table shows
its own CPU per request. ``--quick`` is a smoke run (3 processes, few requests). Everything
started is stopped before it returns.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import percentile, proc_sample
from trio_core.ffmpeg.binary import find_ffmpeg


def _recv(sock: socket.socket, buf: bytes) -> bytes:
    chunk = sock.recv(262144)
    if not chunk:
        raise ConnectionError("server closed the connection")
    return buf + chunk


def _read_response(sock: socket.socket, buf: bytes) -> tuple[int, bool, bytes, bytes]:
    """One response from ``buf`` + ``sock``: (status, Connection: close?, body, rest of the
    buffer). Bodies by Content-Length or chunked (Go's net/http chunks larger answers)."""
    while b"\r\n\r\n" not in buf:
        buf = _recv(sock, buf)
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    close = chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value == b"close":
            close = True
        elif name == b"transfer-encoding" and value == b"chunked":
            chunked = True
    if not chunked:
        while len(rest) < length:
            rest = _recv(sock, rest)
        return status, close, rest[:length], rest[length:]
    parts: list[bytes] = []
    while True:
        while b"\r\n" not in rest:
            rest = _recv(sock, rest)
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            rest = _recv(sock, rest)
        if size == 0:  # no trailers expected: the final CRLF
            return status, close, b"".join(parts), rest[2:]
        parts.append(rest[:size])
        rest = rest[size + 2:]


class Conn:
    """One keep-alive HTTP/1.1 connection (GET only; Content-Length bodies)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closes = 0  # responses that carried ``Connection: close``

    def get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status, close, body, self.buf = _read_response(self.sock, self.buf)
        if close:  # reconnect (and count it): hypercorn (before issue 23) closed after 1,000
            self.closes += 1
            self.sock.close()
            self.sock = socket.create_connection(("127.0.0.1", self.port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buf = b""
        return status, body

    def close(self) -> None:
        self.sock.close()


@dataclass
class Result:
    endpoint: str
    mode: str
    requests: int
    seconds: float
    server_cpu: float
    client_cpu: float
    latencies: list[float]  # seconds
    closes: int
    body_bytes: int

    def row(self) -> str:
        p50 = percentile(self.latencies, 50) or 0.0
        p99 = percentile(self.latencies, 99) or 0.0
        mx = max(self.latencies) if self.latencies else 0.0
        n = max(1, self.requests)
        return (f"| {self.endpoint} | {self.mode} | {self.requests} "
                f"| {self.requests / self.seconds:.0f} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} "
                f"| {mx * 1e3:.1f} | {self.server_cpu / n * 1e3:.3f} "
                f"| {self.client_cpu / n * 1e3:.3f} | {self.closes} | {self.body_bytes} |")


def _client_cpu() -> float:
    t = os.times()
    return t.user + t.system


def sequential(pid: int, port: int, endpoint: str, path: str, requests: int) -> Result:
    conn = Conn(port)
    try:
        for _ in range(20):  # warm-up
            conn.get(path)
        lat: list[float] = []
        before, c0, t0 = proc_sample(pid), _client_cpu(), time.perf_counter()
        size = 0
        for _ in range(requests):
            s = time.perf_counter()
            status, body = conn.get(path)
            lat.append(time.perf_counter() - s)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
            size = len(body)
        seconds, after = time.perf_counter() - t0, proc_sample(pid)
        assert before is not None and after is not None
        return Result(endpoint, "sequential", requests, seconds, after.cpu - before.cpu,
                      _client_cpu() - c0, lat, conn.closes, size)
    finally:
        conn.close()


def concurrent(pid: int, port: int, endpoint: str, path: str, clients: int,
               seconds: float) -> Result:
    conns = [Conn(port) for _ in range(clients)]
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def run(i: int) -> None:
        conn, mine = conns[i], lat[i]
        try:
            conn.get(path)
            start.wait()
            while True:
                s = time.perf_counter()
                if s >= stop_at[0]:
                    return
                status, _ = conn.get(path)
                mine.append(time.perf_counter() - s)
                if status != 200:
                    raise RuntimeError(f"GET {path}: {status}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    before, c0 = proc_sample(pid), _client_cpu()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join()
    elapsed, after = time.perf_counter() - t0, proc_sample(pid)
    for c in conns:
        c.close()
    if errors:
        raise errors[0]
    assert before is not None and after is not None
    all_lat = [x for mine in lat for x in mine]
    return Result(endpoint, f"{clients} clients", len(all_lat), elapsed,
                  after.cpu - before.cpu, _client_cpu() - c0, all_lat,
                  sum(c.closes for c in conns), 0)


def _request(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                  .encode() + body)
        status, _, body, _ = _read_response(s, b"")
    return status, body


def process_config(i: int, stopped: bool) -> dict[str, Any]:
    return {
        "id": f"bench{i:03d}", "reference": f"ref{i}", "autostart": not stopped,
        "input": [{"id": "in", "address": "testsrc=size=64x64:rate=5",
                   "options": ["-re", "-f", "lavfi"]}],
        "output": [{"id": "out", "address": "-", "options": ["-f", "null"]}],
    }


def create_processes(port: int, count: int, stopped: bool, first: int = 0) -> None:
    """Create processes ``first``..``first+count-1`` over the API; running ones: wait until
    every FFmpeg of the server reports progress."""
    import json

    for i in range(first, first + count):
        status, body = _request(port, "POST", "/api/v3/process",
                                json.dumps(process_config(i, stopped)).encode())
        if status != 200:
            raise RuntimeError(f"create process: {status} {body[:200]!r}")
    if not stopped:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listing = json.loads(_request(port, "GET", "/api/v3/process?filter=state")[1])
            if all(p["state"]["exec"] == "running" and p["state"]["progress"]["frame"] > 0
                   for p in listing):
                break
            time.sleep(0.2)


def measure(pid: int, port: int, processes: int, requests: int, seconds: float, clients: int,
            stopped: bool = False, verbose: bool = True) -> list[Result]:
    """On a running server (``pid`` listening on ``port``, no processes yet): create the
    processes, then list and state, each sequential and with ``clients`` clients."""
    create_processes(port, processes, stopped)
    time.sleep(1.0)
    results: list[Result] = []
    state_path = "/api/v3/process/bench000/state"
    for endpoint, path in (("list", "/api/v3/process"), ("state", state_path)):
        results.append(sequential(pid, port, endpoint, path, requests))
        if verbose:
            print(results[-1].row(), file=sys.stderr, flush=True)
        results.append(concurrent(pid, port, endpoint, path, clients, seconds))
        if verbose:
            print(results[-1].row(), file=sys.stderr, flush=True)
    return results


def run(args: argparse.Namespace) -> list[Result]:
    from bench import sut

    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    profile = ("-m", "cProfile", "-o", args.profile) if args.profile else ()
    spec = sut.trio_core(workdir, find_ffmpeg(), python_args=profile)
    try:
        with sut.running(spec) as proc:
            return measure(proc.pid, spec.port, args.processes, args.requests, args.seconds,
                           args.clients, args.stopped)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


HEADER = ("| endpoint | mode | requests | req/s | p50 ms | p99 ms | max ms | server CPU ms/req "
          "| client CPU ms/req | conn closes | body bytes |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    p.add_argument("--processes", type=int, default=50)
    p.add_argument("--requests", type=int, default=1000, help="sequential requests")
    p.add_argument("--seconds", type=float, default=5.0, help="concurrent window")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--stopped", action="store_true",
                   help="processes with autostart false (no FFmpeg; the pure list cost)")
    p.add_argument("--quick", action="store_true", help="smoke run")
    p.add_argument("--profile", metavar="PATH", default="",
                   help="run the server under cProfile, write the stats to PATH")
    args = p.parse_args(argv)
    if args.quick:
        # 500: the state poll costs ~0.07 ms, 50 of them stayed under one CPU clock tick
        args.processes, args.requests, args.seconds, args.clients = 3, 500, 1.0, 2
    results = run(args)
    kind = "stopped" if args.stopped else "running (lavfi testsrc 64x64@5 -> null)"
    print(f"API cost, {args.processes} processes, {kind}\n")
    print(HEADER)
    for r in results:
        print(r.row())


if __name__ == "__main__":
    main()
