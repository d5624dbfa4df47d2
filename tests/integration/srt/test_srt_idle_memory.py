"""What an idle SRT publisher costs the server (issue 22 item 15c), measured on the real thing.

A real trio-core server (a subprocess, ``python -m trio_core``) with SRT on; 100 libsrt callers
in this process connect as publishers and send nothing; the server's RSS grows by the cost
of 100 accepted libsrt sockets plus their hub entries. libsrt's defaults made that ~755 KiB
each (its receive loss list is sized for a 25600-packet flight window, while the window a
caller is granted is min(SRTO_RCVBUF, SRTO_FC) = 8192 packets); with SRTO_FC = 8192 on the
listener it is ~480 KiB. See docs/srt.md "Memory per connection".
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from trio_core.srt import binding

N = 100


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
async def test_an_idle_srt_publisher_costs_under_600_kib(tmp_path: Path, ffmpeg: str) -> None:
    lib = binding.load()
    port = _free_udp_port()
    env = {**os.environ, "CORE_SRT_ENABLE": "true", "CORE_SRT_ADDRESS": f"127.0.0.1:{port}",
           "CORE_API_ADDRESS": "127.0.0.1:0", "CORE_DB_DIR": str(tmp_path / "db"),
           "CORE_STORAGE_DISK_DIR": str(tmp_path / "data"), "CORE_DEMO_ENABLE": "false",
           "CORE_FFMPEG_BINARY": ffmpeg, "CORE_CONFIGFILE": ""}
    server = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_core"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, cwd=str(Path(__file__).resolve().parents[2]))
    lib.startup()
    socks: list[int] = []
    try:
        assert server.stdout is not None
        with trio.fail_after(30):
            line = await server.stdout.receive_some(4096)
        assert b"listening on" in line, line
        await trio.sleep(1.5)  # startup allocations settle
        before = _rss(server.pid)
        for i in range(N):
            sock = lib.create_socket()
            socks.append(sock)
            lib.set_str(sock, binding.SRTO_STREAMID, f"idle{i},mode:publish")
            await trio.to_thread.run_sync(lib.connect, sock, "127.0.0.1", port)
        await trio.sleep(3)
        per_publisher = (_rss(server.pid) - before) / N
        print(f"{N} idle SRT publishers: {per_publisher / 1024:.0f} KiB each (server RSS)")
        assert per_publisher < 600 * 1024
    finally:
        for sock in socks:
            lib.close(sock)
        lib.cleanup()
        server.terminate()
        with trio.move_on_after(10):
            await server.wait()
        if server.returncode is None:
            server.kill()
            await server.wait()
