"""Helpers for the RTMP tests: FFmpeg publishers/players and raw sockets."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from tests.helpers.api import Api, make_config, running_server
from trio_core.rtmp.subsystem import RtmpSubsystem
from trio_core.server import Running

FRAME_RE = re.compile(rb"frame=\s*(\d+)")


def publisher_argv(ffmpeg: str, url: str, *, seconds: float | None = None, size: str = "320x240",
                   extra: tuple[str, ...] = ()) -> list[str]:
    """FFmpeg pushing H264 + AAC as OBS would (``-f flv rtmp://…``), 25 fps, 1 s GOP."""
    argv = [
        ffmpeg, "-hide_banner", "-nostats", "-loglevel", "warning",
        "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-profile:v", "baseline", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
        "-b:v", "500k", "-threads", "1",
        "-c:a", "aac", "-b:a", "64k",
        *extra,
    ]
    if seconds is not None:
        argv += ["-t", str(seconds)]
    return [*argv, "-f", "flv", url]


async def start_ffmpeg(nursery: trio.Nursery, argv: list[str]) -> trio.Process:
    """Start FFmpeg in ``nursery`` (stdin a pipe so cancellation can stop it; stderr kept)."""
    proc: trio.Process = await nursery.start(partial(
        trio.run_process, argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, check=False))
    return proc


async def run_ffmpeg(argv: list[str], timeout: float = 60.0) -> tuple[int, bytes]:
    """Run FFmpeg to the end; (return code, stderr)."""
    with trio.fail_after(timeout):
        result = await trio.run_process(argv, stdin=subprocess.DEVNULL, capture_stdout=True,
                                        capture_stderr=True, check=False)
    return result.returncode, result.stderr


async def play_frames(ffmpeg: str, url: str, seconds: float, timeout: float = 60.0
                      ) -> tuple[int, int, bytes]:
    """Play ``url`` with FFmpeg for ``seconds``, decoding; (rc, decoded video frames, stderr)."""
    rc, err = await run_ffmpeg([ffmpeg, "-hide_banner", "-nostdin", "-rw_timeout", "15000000",
                                "-i", url, "-t", str(seconds), "-map", "0:v", "-f", "null", "-"],
                               timeout)
    counts = FRAME_RE.findall(err)
    return rc, int(counts[-1]) if counts else 0, err


@asynccontextmanager
async def rtmp_server(tmp_path, ffmpeg: str, **overrides: Any) -> AsyncIterator[tuple[Running, int]]:
    config = make_config(tmp_path, ffmpeg, **{"rtmp.enable": True,
                                              "rtmp.address": "127.0.0.1:0", **overrides})
    async with running_server(config) as srv:
        sub: RtmpSubsystem = srv.subsystem(RtmpSubsystem)
        yield srv, sub.server.ports[0]


async def wait_listed(api: Api, name: str, present: bool = True, timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while True:
            resp = await api.get("/api/v3/rtmp")
            assert resp.status_code == 200
            names = [c["name"] for c in resp.json()]
            if (name in names) == present:
                return
            await trio.sleep(0.2)
