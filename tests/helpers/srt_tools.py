"""Helpers for the SRT tests: FFmpeg publishers/readers over SRT, a raw libsrt caller."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from trio_core.srt import binding

SRT_THREAD_PREFIX = "srt-io"


def srt_url(port: int, streamid: str, **query: str) -> str:
    """An FFmpeg ``srt://`` caller URL on loopback."""
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return f"srt://127.0.0.1:{port}?mode=caller&transtype=live&streamid={streamid}{extra}"


def publisher_argv(ffmpeg: str, url: str) -> list[str]:
    """H264 (baseline, 1 s GOP) + AAC in MPEG-TS, paced in real time, as OBS would push."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v",
        "baseline", "-pix_fmt", "yuv420p", "-g", "25", "-threads", "1",
        "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", url,
    ]


@asynccontextmanager
async def ffmpeg_publisher(ffmpeg: str, url: str, log: Path) -> AsyncIterator[trio.Process]:
    """Run a publisher until the block ends (then SIGTERM: FFmpeg closes SRT cleanly)."""
    with open(log, "ab") as err:
        proc = await trio.lowlevel.open_process(
            publisher_argv(ffmpeg, url), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err)
    try:
        yield proc
    finally:
        await stop_process(proc)


async def stop_process(proc: trio.Process) -> None:
    """SIGTERM, then SIGKILL after 5 s; always reaped."""
    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(5):
                await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def ffmpeg_read(ffmpeg: str, url: str, frames: int = 25, timeout: float = 40.0
                      ) -> tuple[int, int, str]:
    """Subscribe with FFmpeg and decode ``frames`` video frames.

    Returns ``(returncode, frames decoded, stderr)``; the process is killed at ``timeout``.
    """
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats",
            "-i", url, "-map", "0:v:0", "-frames:v", str(frames), "-f", "null", "-",
            "-progress", "pipe:1"]
    with trio.move_on_after(timeout):
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                        check=False)
        decoded = 0
        for line in result.stdout.decode().splitlines():
            if line.startswith("frame="):
                decoded = int(line.split("=", 1)[1])
        return result.returncode, decoded, result.stderr.decode("utf-8", "replace")
    return -1, 0, "timeout"


async def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
                     interval: float = 0.1) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; fail naming ``what`` at ``timeout``."""
    with trio.move_on_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await trio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def srt_threads() -> list[str]:
    """Names of live threads running the SRT server's I/O loop."""
    return [t.name for t in threading.enumerate() if t.name.startswith(SRT_THREAD_PREFIX)]


def libsrt_threads() -> list[str]:
    """Names of this process's OS threads started by libsrt (``SRT:GC``, ``SRT:RcvQ:w1``…)."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name.startswith("SRT:"):
            names.append(name)
    return names


class RawCaller:
    """A libsrt caller in this process (for what FFmpeg cannot do: connect and never read)."""

    def __init__(self) -> None:
        self.lib = binding.load()
        self.lib.startup()
        self.sock = self.lib.create_socket()

    async def connect(self, port: int, streamid: str, **int_options: int) -> None:
        self.lib.set_str(self.sock, binding.SRTO_STREAMID, streamid)
        for opt, value in int_options.items():
            self.lib.set_int(self.sock, getattr(binding, opt), value)
        await trio.to_thread.run_sync(self.lib.connect, self.sock, "127.0.0.1", port)

    def close(self) -> None:
        self.lib.close(self.sock)
        self.lib.cleanup()
