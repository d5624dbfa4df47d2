"""WHIP helpers: a server with WHIP on, FFmpeg's ``-f whip`` muxer as a publisher (a real,
independent WHIP client), and waiting for a channel to be published."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from tests.helpers.api import Api, make_config, running_server
from trio_core.server import Running

FPS = 25


def whip_ffmpeg() -> str:
    """An FFmpeg with the ``whip`` muxer for publishing (FFmpeg 8+): imageio-ffmpeg's (9.0.2
    here), whatever FFmpeg the server's processes use (Debian's 5.1 has no WHIP muxer)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@asynccontextmanager
async def whip_server(tmp_path, ffmpeg: str, **overrides: Any) -> AsyncIterator[Running]:
    config = make_config(tmp_path, ffmpeg, **{"webrtc.enable": True, "whip.enable": True,
                                              **overrides})
    async with running_server(config) as srv:
        yield srv


def ffmpeg_whip_argv(url: str, *, token: str = "", dtls_active: bool = False,
                     seconds: float = 0, audio: bool = True, size: str = "320x240") -> list[str]:
    """FFmpeg publishing testsrc (+ a tone) over WHIP: H264 constrained baseline without
    B-frames, a keyframe a second, Opus."""
    argv = [whip_ffmpeg(), "-hide_banner", "-loglevel", "warning", "-re",
            "-f", "lavfi", "-i", f"testsrc=size={size}:rate={FPS}"]
    if audio:
        argv += ["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    if seconds:
        argv += ["-t", str(seconds)]
    argv += ["-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-bf", "0",
             "-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0",
             "-tune", "zerolatency", "-preset", "ultrafast", "-b:v", "600k"]
    if audio:
        argv += ["-c:a", "libopus", "-ar", "48000", "-ac", "2", "-b:a", "64k"]
    argv += ["-f", "whip"]
    if token:
        argv += ["-authorization", token]
    if dtls_active:
        argv += ["-whip_flags", "dtls_active"]
    return [*argv, url]


@asynccontextmanager
async def ffmpeg_publisher(argv: list[str]) -> AsyncIterator[trio.Process]:
    """Run a publishing FFmpeg for the block (then ``q``, then SIGTERM/SIGKILL)."""
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(lambda task_status: trio.run_process(
            argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
            task_status=task_status))
        errors = bytearray()

        async def drain() -> None:
            assert proc.stderr is not None
            async for chunk in proc.stderr:
                del errors[:max(0, len(errors) + len(chunk) - 20000)]
                errors.extend(chunk)

        nursery.start_soon(drain)
        proc.stderr_tail = errors  # type: ignore[attr-defined]
        try:
            yield proc
        finally:
            if proc.returncode is None and proc.stdin is not None:
                try:
                    await proc.stdin.send_all(b"q")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                with trio.move_on_after(3):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
            nursery.cancel_scope.cancel()


async def wait_published(api: Api, name: str, timeout: float = 20.0, *,
                         packets: int = 1) -> dict[str, Any]:
    """The ``GET /api/v3/whip`` entry of ``name`` once it is connected and sent ``packets``."""
    with trio.fail_after(timeout):
        while True:
            for entry in (await api.get("/api/v3/whip")).json():
                if (entry["name"] == name and entry["state"] == "connected"
                        and entry["packets"] >= packets):
                    return entry
            await trio.sleep(0.1)


async def whip_offer(api: Api, name: str, sdp: str, **headers: str) -> Any:
    return await api.request("POST", f"/whip/{name}", content=sdp,
                             headers={"Content-Type": "application/sdp", **headers})
