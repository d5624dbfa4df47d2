"""trio-core's forwarder under test, fed the same tee'd RTP as Janus and aiortc.

``python -m bench.trio_core_server`` is a thin harness around ``rtp.forwarder.Forwarder``:
the tee feeds the Source ports directly, and a minimal WHEP endpoint (``POST /whep`` ->
``Forwarder.add_peer``) answers. This measures exactly "RTP into the Source -> SRTP out",
like the Janus and aiortc columns. The product path (the real server, its API and its
WHEP endpoint) is measured by ``bench/product.py``.

``--workers N`` is the forwarder's ``fanout_workers``. ``--floor`` is the **kernel floor**:
the same harness, viewers and signalling, but each producer packet goes to every viewer as
the same ready bytes (padded by the 16 bytes an SRTP tag adds) in one C call that only
``sendmmsg`` them to the pre-resolved viewer addresses (``rtp._fanout.floor_send``): no
header rewrite, no SRTP, no per-viewer Python — what the kernel alone costs per packet.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def pick_mode() -> str | None:
    forced = os.environ.get("BENCH_TRIO_CORE_MODE")
    if forced:
        return forced
    if _has("rtp.forwarder"):
        return "forwarder"
    return None


class TrioCoreServer:
    """The forwarder harness; ``python_fanout`` forces the pure-Python hot path
    (``RTP_FANOUT=python``, the ``trio-core-py`` column) instead of ``rtp/_fanout.c``."""

    def __init__(self, workdir: Path, http: httpx.AsyncClient, pin: set[int] | None,
                 cmd: list[str] | None = None, *, python_fanout: bool = False,
                 workers: int = 1, floor: bool = False) -> None:  # fmt: skip
        from bench.servers import WhepClientMixin
        from rtp import fanout

        self.name = "kernel-floor" if floor else ("trio-core-py" if python_fanout else "trio-core")
        self.workers = 1 if (python_fanout or floor) else workers
        self.floor = floor
        self.workdir = workdir
        self.http = http
        self.pin = pin
        self.cmd = cmd
        self.pid = 0
        self.mode = pick_mode()
        self.env = dict(os.environ, RTP_FANOUT="python") if (python_fanout or floor) else None
        path = ("C fan-out, sendmmsg" if fanout.NATIVE and not python_fanout
                else "Python fan-out")  # fmt: skip
        if floor:
            path = "kernel floor: sendmmsg of ready bytes, no SRTP, no per-viewer Python"
        elif fanout.NATIVE and not python_fanout:
            path += f", fanout_workers={self.workers}"
        self.version = f"trio-core ({self.mode or 'not available'} mode, {path})"
        self.url = ""
        self._whep = WhepClientMixin()
        self._whep.http = http

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        if self.mode is None:
            raise RuntimeError(
                "trio-core's forwarder (rtp/forwarder.py) is not in this tree yet"
            )
        from bench.servers import ServerError

        port = _free_tcp()
        info = self.workdir / "trio-core-ports.json"
        log = open(self.workdir / "trio-core.log", "wb")  # noqa: SIM115
        # --trio-core-cmd replaces the interpreter + module; the harness arguments are appended
        argv = [*(self.cmd or [sys.executable, "-m", "bench.trio_core_server"]),
                "--port", str(port), "--info", str(info),
                "--sdp", str(self.workdir / "source.sdp"),
                "--workers", str(self.workers)] + (["--floor"] if self.floor else [])  # fmt: skip
        if self.pin:
            argv = ["taskset", "-c", ",".join(map(str, sorted(self.pin))), *argv]
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(
                partial(trio.run_process, argv, stdout=log, stderr=log, check=False, cwd=ROOT,
                        env=self.env)
            )
            self.pid = proc.pid
            self.url = f"http://127.0.0.1:{port}/whep"
            with trio.fail_after(30):
                while not info.exists():
                    if proc.returncode is not None:
                        raise ServerError(f"trio-core harness exited; see {self.workdir}/trio-core.log")
                    await trio.sleep(0.05)
                await trio.sleep(0.05)
            ports = json.loads(info.read_text())
            task_status.started((ports["video"], ports["audio"]))
            try:
                await trio.sleep_forever()
            finally:
                nursery.cancel_scope.cancel()
                log.close()

    async def ready(self) -> None:
        with trio.fail_after(60):
            while True:
                try:
                    r = await self.http.get(self.url.rsplit("/", 1)[0] + "/ready", timeout=2)
                    if r.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.1)

    async def connect(self, v: Any) -> None:
        await self._whep.whep_connect(self.url, v)

    async def disconnect(self, v: Any) -> None:
        await self._whep.whep_disconnect(v)


def _free_tcp() -> int:
    from bench.common import free_tcp_port

    return free_tcp_port()


# --- the forwarder harness (runs in its own process) -----------------------------------------


async def _read_request(stream: trio.SocketStream, buf: bytearray) -> tuple[str, str, bytes] | None:
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        k, _, val = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(val.strip())
    body = bytearray(rest)
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        body += chunk
    buf[:] = body[length:]
    return method, path, bytes(body[:length])


def install_floor() -> None:
    """The kernel floor: replace the Source's (Python) fan-out loop by one C call per packet
    that sends the same ready bytes to every viewer address (see the module docstring)."""
    import rtp.source
    from rtp import _fanout  # type: ignore[attr-defined]

    pad = bytes(16)  # what an SRTP tag adds (AES-GCM): the same datagram sizes
    cache: dict[int, tuple[int, int, bytes, int]] = {}
    send, addrs_of = _fanout.floor_send, _fanout.floor_addrs

    def floor(fan: list[Any], pkt: Any) -> None:
        key = id(fan)
        known = cache.get(key)
        if known is None or known[0] != len(fan) or known[1] != id(fan[-1]):
            known = (len(fan), id(fan[-1]), addrs_of([t.addr for t in fan]), fan[0].fd)
            cache[key] = known
        send(known[3], pkt.data + pad, known[2])

    rtp.source.fan_out_python = floor  # type: ignore[assignment]


async def harness(port: int, info: Path, sdp_path: Path, workers: int = 1,
                  floor: bool = False) -> None:
    from rtp.forwarder import Forwarder  # type: ignore[import-not-found]

    if floor:
        install_floor()
    forwarder = Forwarder(host="127.0.0.1", port=0, advertise=["127.0.0.1"],
                          fanout_workers=workers)
    ready = False
    sessions: dict[str, str] = {}

    async def handle(stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            while True:
                req = await _read_request(stream, buf)
                if req is None:
                    return
                method, path, body = req
                status, headers, payload = 404, {}, b""
                if method == "GET" and path == "/ready":
                    status = 200 if ready else 503
                elif method == "POST" and path == "/whep":
                    try:
                        peer, answer = await forwarder.add_peer("bench", body.decode())
                        sid = secrets.token_urlsafe(12)
                        sessions[sid] = peer.id
                        status, payload = 201, answer.sdp.encode()
                        headers = {"Content-Type": "application/sdp", "Location": f"/whep/{sid}"}
                    except Exception as exc:
                        status, payload = 400, f"{type(exc).__name__}: {exc}".encode()
                elif method == "DELETE" and path.startswith("/whep/"):
                    peer_id = sessions.pop(path.rsplit("/", 1)[1], None)
                    status = 200 if peer_id and forwarder.close_peer(peer_id) is not False else 404
                reason = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found",
                          503: "Service Unavailable"}[status]  # fmt: skip
                hdrs = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                await stream.send_all(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(payload)}\r\n{hdrs}\r\n"
                    .encode() + payload
                )  # fmt: skip
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            return

    async with trio.open_nursery() as nursery:
        await nursery.start(forwarder.run)
        await nursery.start(partial(forwarder.open_source, "bench", ("video", "audio")))
        source = forwarder.source("bench")
        ports = dict(source.ports)
        info.write_text(json.dumps({"video": ports["video"], "audio": ports["audio"]}))
        await nursery.start(partial(trio.serve_tcp, handle, port, host="127.0.0.1"))
        while not sdp_path.exists() or not sdp_path.read_text().strip():
            await trio.sleep(0.05)
        await trio.sleep(0.1)
        source.set_sdp(sdp_path.read_text())
        ready = True
        await trio.sleep_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--info", required=True)
    ap.add_argument("--sdp", required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--floor", action="store_true")
    args = ap.parse_args()
    try:
        trio.run(partial(harness, args.port, Path(args.info), Path(args.sdp),
                         workers=args.workers, floor=args.floor))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
