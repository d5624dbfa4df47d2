"""The server under test: how to start trio-core or datarhei Core for a bench, and stop it.

A :class:`ServerSpec` says everything a scenario needs about a server: its command, its
environment (the two servers spell a few settings differently: trio-core's API listens on
``CORE_API_ADDRESS``, Core's on ``CORE_ADDRESS``), its working directory, the API base URL, the
RTMP port (when RTMP is on) and the memfs credentials. :func:`running` starts it as a child
process (its output goes to ``<workdir>/<name>.log``), waits until ``GET /api`` answers 200 and
stops it (SIGTERM, then SIGKILL after 15 s) when the block ends, whatever happened inside.

Both servers get the same settings: API auth off, no update check, the given FFmpeg, memfs
credentials :data:`AUTH`, a fresh DB and disk storage in ``workdir``. trio-core runs with
WebRTC off unless asked (Core has none). Core reads a few files relative to its working
directory (its source tree's ``mime.types``): ``core_dir`` defaults to ``<binary's dir>/src``
when that exists (the layout ``../shared/tools/datarhei-core/build.sh`` leaves), else the
binary's own directory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import free_tcp_port

AUTH = ("bench", "bench-secret")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServerSpec:
    name: str
    argv: list[str]
    env: dict[str, str]  # added to os.environ
    cwd: Path
    workdir: Path
    port: int
    rtmp_port: int | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _common_env(workdir: Path, ffmpeg: str) -> dict[str, str]:
    return {
        "CORE_API_AUTH_ENABLE": "false", "CORE_DB_DIR": str(workdir / "db"),
        "CORE_STORAGE_DISK_DIR": str(workdir / "data"), "CORE_FFMPEG_BINARY": ffmpeg,
        "CORE_STORAGE_MEMORY_AUTH_ENABLE": "true",
        "CORE_STORAGE_MEMORY_AUTH_USERNAME": AUTH[0],
        "CORE_STORAGE_MEMORY_AUTH_PASSWORD": AUTH[1],
        "CORE_UPDATE_CHECK": "false", "CORE_LOG_LEVEL": "warn",  # Core's name; both take it
    }  # fmt: skip


def trio_core(workdir: Path, ffmpeg: str, *, rtmp: bool = False, webrtc: bool = True,
              python_args: tuple[str, ...] = ()) -> ServerSpec:  # fmt: skip
    """``python -m trio_core`` on a free loopback port (demo off)."""
    port = free_tcp_port()
    env = {**_common_env(workdir, ffmpeg), "CORE_API_ADDRESS": f"127.0.0.1:{port}",
           "CORE_DEMO_ENABLE": "false"}
    if not webrtc:
        env["CORE_WEBRTC_ENABLE"] = "false"
    rtmp_port = None
    if rtmp:
        rtmp_port = free_tcp_port()
        env.update(CORE_RTMP_ENABLE="true", CORE_RTMP_ADDRESS=f"127.0.0.1:{rtmp_port}",
                   CORE_RTMP_APP="/")
    return ServerSpec("trio-core", [sys.executable, *python_args, "-m", "trio_core"], env,
                      workdir, workdir, port, rtmp_port)


def datarhei_core(workdir: Path, ffmpeg: str, binary: str, *, rtmp: bool = False,
                  core_dir: str = "") -> ServerSpec:  # fmt: skip
    """datarhei Core's binary, configured like a fresh trio-core (see the module docstring)."""
    binary = str(Path(binary).resolve())
    if core_dir:
        cwd = Path(core_dir).resolve()
    else:
        src = Path(binary).parent / "src"
        cwd = src if src.is_dir() else Path(binary).parent
    port = free_tcp_port()
    env = {
        **_common_env(workdir, ffmpeg), "CORE_CONFIGFILE": str(workdir / "config.json"),
        "CORE_ADDRESS": f"127.0.0.1:{port}", "CORE_HOST_AUTO": "false",
        "CORE_HOST_NAME": "127.0.0.1", "CORE_RTMP_ENABLE": "false",
    }  # fmt: skip
    if (cwd / "mime.types").exists():
        env["CORE_STORAGE_MIMETYPES_FILE"] = str(cwd / "mime.types")
    rtmp_port = None
    if rtmp:
        rtmp_port = free_tcp_port()
        env.update(CORE_RTMP_ENABLE="true", CORE_RTMP_ADDRESS=f"127.0.0.1:{rtmp_port}",
                   CORE_RTMP_APP="/")
    return ServerSpec("Core", [binary], env, cwd, workdir, port, rtmp_port)


def http_get_status(port: int, path: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                  .encode())
        head = s.recv(64)
    return int(head.split()[1])


@contextmanager
def running(spec: ServerSpec, timeout: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``spec``, wait for ``GET /api`` = 200, yield the process; always stop it."""
    spec.workdir.mkdir(parents=True, exist_ok=True)
    log = open(spec.workdir / f"{spec.name}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(spec.argv, env={**os.environ, **spec.env}, cwd=str(spec.cwd),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if http_get_status(spec.port, "/api") == 200:
                    break
            except (OSError, ValueError, IndexError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (spec.workdir / f"{spec.name}.log").read_bytes()[-600:]
                raise RuntimeError(f"{spec.name} did not come up: {tail.decode(errors='replace')}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
