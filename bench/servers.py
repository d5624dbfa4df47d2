"""The servers under test, behind one small interface the runner drives.

Each server: ``await nursery.start(server.run)`` starts it (and keeps it running until the
nursery is cancelled) and reports the RTP ports its input wants (the tee feeds them);
``connect(viewer)`` performs the signalling for one viewer (WHEP POST for trio-core and
aiortc; session/attach/watch/start for Janus) and fills ``viewer.timing``;
``disconnect(viewer)`` ends it. ``pid`` is the process whose CPU and memory are measured.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from bench import janus as janus_mod
from bench.common import AUDIO_PT, VIDEO_PT, free_tcp_port
from bench.viewer import Viewer

ROOT = Path(__file__).resolve().parent.parent


class ServerError(RuntimeError):
    pass


def _pinned(argv: list[str], pin: set[int] | None) -> list[str]:
    """Prefix ``taskset`` so every thread of the server inherits the CPU set (the pid stays
    the server's: taskset execs it)."""
    if not pin:
        return argv
    return ["taskset", "-c", ",".join(map(str, sorted(pin))), *argv]


class WhepClientMixin:
    http: httpx.AsyncClient

    async def whep_connect(self, url: str, v: Viewer) -> None:
        offer = v.make_offer()
        v.timing.start = time.time()
        resp = await self.http.post(
            url, content=offer, headers={"Content-Type": "application/sdp"}, timeout=20
        )
        v.timing.signalled = time.time()
        if resp.status_code != 201:
            raise ServerError(f"WHEP POST {resp.status_code}: {resp.text[:200]}")
        loc = resp.headers.get("location")
        if loc:
            v.session_url = str(httpx.URL(url).join(loc))
        v.accept_answer(resp.text)

    async def whep_disconnect(self, v: Viewer) -> None:
        if v.session_url:
            try:
                await self.http.delete(v.session_url, timeout=5)
            except httpx.HTTPError:
                pass


async def _wait_http(url: str, timeout: float = 20.0) -> None:
    async with httpx.AsyncClient() as http:
        with trio.fail_after(timeout):
            while True:
                try:
                    await http.get(url, timeout=1)
                    return
                except httpx.HTTPError:
                    await trio.sleep(0.1)


# --- Janus ----------------------------------------------------------------------------------------


class JanusServer:
    name = "janus"

    def __init__(self, workdir: Path, http: httpx.AsyncClient, pin: set[int] | None,
                 loops: int | None = None) -> None:
        self.workdir = workdir
        self.http = http
        self.pin = pin
        self.loops = loops
        self.pid = 0
        self.version = f"Janus {janus_mod.version()} (Debian), streaming plugin, RTP mountpoint"
        self.client: janus_mod.JanusClient | None = None
        self.handles: dict[int, int] = {}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        binary = janus_mod.available()
        if binary is None:
            raise ServerError("janus is not installed (apt-get install -y janus)")
        port = free_tcp_port()
        folder = self.workdir / "janus-config"
        # Static event loops (one per CPU it may use) instead of Janus's default thread per
        # PeerConnection: measured here, 22 vs 40 us/packet and 100 viewers clean vs 13 % loss.
        default_loops = len(self.pin) if self.pin else (os.cpu_count() or 1)
        loops = int(os.environ.get("BENCH_JANUS_EVENT_LOOPS", self.loops or default_loops))
        self.version += f", event_loops={loops or 'default (thread per PeerConnection)'}"
        janus_mod.write_config(folder, port, loops)
        log = open(self.workdir / "janus.log", "wb")  # noqa: SIM115
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(
                partial(
                    trio.run_process,
                    _pinned(janus_mod.janus_argv(binary, folder), self.pin),
                    stdout=log,
                    stderr=log,
                    check=False,
                )
            )
            self.pid = proc.pid
            base = f"http://127.0.0.1:{port}/janus"
            await _wait_http(f"{base}/info")
            self.client = janus_mod.JanusClient(self.http, base)
            await nursery.start(self.client.run)
            handle, _ = await self.client.attach()
            created = await self.client.create_mountpoint(
                handle,
                4242,
                [
                    {"type": "video", "mid": "v", "port": 0, "pt": VIDEO_PT, "codec": "h264",
                     "fmtp": "profile-level-id=42e01f;packetization-mode=1"},
                    {"type": "audio", "mid": "a", "port": 0, "pt": AUDIO_PT, "codec": "opus"},
                ],
            )  # fmt: skip
            ports = {p["type"]: int(p["port"]) for p in created["stream"]["ports"]}
            task_status.started((ports["video"], ports["audio"]))
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await self.client.destroy()
                nursery.cancel_scope.cancel()
                log.close()

    async def ready(self) -> None:
        return

    async def connect(self, v: Viewer) -> None:
        assert self.client is not None
        handle, events = await self.client.attach()
        self.handles[v.index] = handle
        v.timing.start = time.time()
        await self.client.message(handle, {"request": "watch", "id": 4242})
        offer = None
        with trio.fail_after(15):
            while offer is None:
                event = await events.receive()
                jsep = event.get("jsep")
                if jsep and jsep.get("type") == "offer":
                    offer = jsep["sdp"]
        v.timing.signalled = time.time()
        answer = v.answer_offer(offer)
        v.extra["janus_events"] = events
        await self.client.message(
            handle, {"request": "start"}, jsep={"type": "answer", "sdp": answer}
        )

    async def disconnect(self, v: Viewer) -> None:
        handle = self.handles.pop(v.index, None)
        if handle is not None and self.client is not None:
            await self.client.detach(handle)


# --- aiortc ---------------------------------------------------------------------------------------


class AiortcServer(WhepClientMixin):
    name = "aiortc"

    def __init__(self, workdir: Path, http: httpx.AsyncClient, pin: set[int] | None) -> None:
        self.workdir = workdir
        self.http = http
        self.pin = pin
        self.pid = 0
        import aiortc

        self.version = f"aiortc {aiortc.__version__} (MediaPlayer decode=False + MediaRelay)"
        self.url = ""

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        port = free_tcp_port()
        info = self.workdir / "aiortc-ports.json"
        log = open(self.workdir / "aiortc.log", "wb")  # noqa: SIM115
        argv = [sys.executable, "-m", "bench.aiortc_server", "--port", str(port),
                "--info", str(info), "--workdir", str(self.workdir)]  # fmt: skip
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(
                partial(trio.run_process, _pinned(argv, self.pin), stdout=log, stderr=log,
                        check=False, cwd=ROOT)
            )
            self.pid = proc.pid
            self.url = f"http://127.0.0.1:{port}/whep"
            with trio.fail_after(30):
                while not info.exists():
                    if proc.returncode is not None:
                        raise ServerError("aiortc server exited; see aiortc.log")
                    await trio.sleep(0.1)
                await trio.sleep(0.1)
            ports = json.loads(info.read_text())
            task_status.started((ports["video"], ports["audio"]))
            try:
                await trio.sleep_forever()
            finally:
                nursery.cancel_scope.cancel()
                log.close()

    async def ready(self) -> None:
        await _wait_http(self.url.rsplit("/", 1)[0] + "/", timeout=60)

    async def connect(self, v: Viewer) -> None:
        await self.whep_connect(self.url, v)

    async def disconnect(self, v: Viewer) -> None:
        await self.whep_disconnect(v)


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench-"))
