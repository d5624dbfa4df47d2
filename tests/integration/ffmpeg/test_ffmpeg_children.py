"""Every FFmpeg the server starts goes through the one spawn path (``trio_core.ffmpeg.child``):
a probe's or a skills call's FFmpeg dies with a SIGKILLed server, is recorded in the pid
records while it runs, and a probe whose client leaves gives back its FFmpeg and its pipes.

Real servers (``python -m trio_core`` subprocesses), real FFmpeg, real HTTP. The probed input
is a TCP socket that listens but never answers: FFmpeg connects and then waits for data
forever, so the probe runs until the client leaves, the probe times out or the server dies.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.helpers.server_process import server_env, server_subprocess
from trio_core.engine.pid_records import DIRNAME
from trio_core.ffmpeg.procfs import ProcStat, read_proc_stat

NO_SUBSYSTEMS = {"CORE_WEBRTC_ENABLE": "false", "CORE_RTMP_ENABLE": "false",
                 "CORE_SRT_ENABLE": "false"}


# ---------------------------------------------------------------------------------- helpers
async def request(method: str, url: str, *, timeout: float = 20.0, **kw: Any) -> httpx.Response:
    return await trio.to_thread.run_sync(
        lambda: httpx.request(method, url, timeout=timeout, **kw))


async def background_get(url: str) -> None:
    """GET ``url`` until the server dies (then the request fails; that is expected)."""
    try:
        await trio.to_thread.run_sync(lambda: httpx.get(url, timeout=60), abandon_on_cancel=True)
    except httpx.HTTPError:
        pass


async def abandoned_get(url: str, after: float) -> None:
    """GET ``url`` and leave (close the connection) after ``after`` seconds."""
    with pytest.raises(httpx.TimeoutException):
        await request("GET", url, timeout=after)


@pytest.fixture
def silent_tcp() -> Iterator[str]:
    """``tcp://127.0.0.1:<port>``: connections are accepted by the kernel, never answered."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def probe_process(address: str) -> dict[str, Any]:
    return {"id": "probed", "input": [{"id": "in", "address": address, "options": []}],
            "output": [{"id": "out", "address": "-", "options": ["-f", "null"]}],
            "autostart": False}


def children(parent: int, marker: str) -> list[ProcStat]:
    """Live processes whose parent is ``parent`` and whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = read_proc_stat(int(entry))
        if st is None or st.ppid != parent or st.dead:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(st)
    return found


def with_marker(marker: str) -> list[ProcStat]:
    """Live processes (any parent) whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        st = read_proc_stat(int(entry))
        if marker in cmdline and st is not None and not st.dead:
            found.append(st)
    return found


def alive(st: ProcStat) -> bool:
    now = read_proc_stat(st.pid)
    return now is not None and now.start_time == st.start_time and not now.dead


async def wait_until(check: Callable[[], Any], timeout: float) -> Any:
    with trio.fail_after(timeout):
        while not (value := check()):
            await trio.sleep(0.02)
    return value


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def assert_dies_with_server(server: subprocess.Popen[bytes], ffmpegs: list[ProcStat]
                                  ) -> None:
    assert ffmpegs and all(alive(st) for st in ffmpegs)
    server.send_signal(signal.SIGKILL)
    killed_at = trio.current_time()
    while any(alive(st) for st in ffmpegs) and trio.current_time() - killed_at < 2.0:
        await trio.sleep(0.02)
    survivors = [st.pid for st in ffmpegs if alive(st)]
    for pid in survivors:  # do not leave them behind after a failure
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"FFmpeg outlived the server by 2 s: {survivors}"


# ------------------------------------------------------------------------------------ tests
async def test_kill_9_during_a_probe_leaves_no_ffmpeg(tmp_path: Path, ffmpeg: str,
                                                      silent_tcp: str) -> None:
    async with server_subprocess(server_env(tmp_path, ffmpeg, **NO_SUBSYSTEMS),
                                 tmp_path / "server.log") as (server, base):
        resp = await request("POST", base + "/api/v3/process", json=probe_process(silent_tcp))
        assert resp.status_code == 200, resp.text
        async with trio.open_nursery() as nursery:
            nursery.start_soon(background_get, base + "/api/v3/process/probed/probe")
            (probe,) = await wait_until(lambda: children(server.pid, silent_tcp), 10)
            # the probe's FFmpeg is recorded while it runs
            record = tmp_path / "db" / DIRNAME / f"{probe.pid}.json"
            with trio.move_on_after(5):
                while not record.exists():
                    await trio.sleep(0.02)
            recorded = record.exists()
            await assert_dies_with_server(server, [probe])
            nursery.cancel_scope.cancel()
        assert recorded, "the probe's FFmpeg has no pid record"
        assert probe.pgrp == probe.pid, "the probe's FFmpeg has no process group of its own"


async def test_kill_9_during_a_skills_reload_leaves_no_ffmpeg(tmp_path: Path,
                                                              ffmpeg: str) -> None:
    # an "FFmpeg" whose -hwaccels never ends (exec keeps pid and parent-death signal)
    marker = f"3600.{os.getpid()}{secrets.randbelow(10**6)}"  # a unique sleep duration
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *-hwaccels*) exec /bin/sleep {marker};; '
                       f'esac\nexec "{ffmpeg}" "$@"\n')
    wrapper.chmod(0o755)
    async with server_subprocess(server_env(tmp_path, str(wrapper), **NO_SUBSYSTEMS),
                                 tmp_path / "server.log") as (server, base):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(background_get, base + "/api/v3/skills/reload")
            (hung,) = await wait_until(lambda: children(server.pid, marker), 15)
            await assert_dies_with_server(server, [hung])
            nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_abandoned_probes_give_back_their_ffmpeg_and_fds(tmp_path: Path, ffmpeg: str,
                                                               silent_tcp: str) -> None:
    """Issue 22 item 9: each probe whose client left kept its stderr pipe open."""
    async with server_subprocess(server_env(tmp_path, ffmpeg, **NO_SUBSYSTEMS),
                                 tmp_path / "server.log") as (server, base):
        resp = await request("POST", base + "/api/v3/process", json=probe_process(silent_tcp))
        assert resp.status_code == 200, resp.text
        await trio.sleep(0.5)
        baseline = open_fds(server.pid)
        for _ in range(10):
            await abandoned_get(base + "/api/v3/process/probed/probe", 0.6)
        port = silent_tcp.rsplit(":", 1)[1]
        with trio.move_on_after(5):
            while with_marker(f"127.0.0.1:{port}") or open_fds(server.pid) > baseline:
                await trio.sleep(0.05)
        assert with_marker(f"127.0.0.1:{port}") == []
        assert open_fds(server.pid) <= baseline, os.listdir(f"/proc/{server.pid}/fd")
        assert list((tmp_path / "db" / DIRNAME).glob("*.json")) == []
        # and the server still answers a probe
        resp = await request("GET", base + "/api/v3/process/nope/probe")
        assert resp.status_code == 200
        assert server.poll() is None
