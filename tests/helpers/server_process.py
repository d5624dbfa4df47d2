"""The real server as a child process (``python -m trio_core``): its environment and a context
manager that yields it once its API listens, for tests that ``kill -9`` it or restart it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[2]


def server_env(tmp_path: Path, ffmpeg: str, **extra: str) -> dict[str, str]:
    """This process's environment without ``CORE_*``, plus a server on port 0 with its db, data
    and temp dirs below ``tmp_path``, WebRTC on, no demo; ``extra`` overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORE_")}
    (tmp_path / "tmp").mkdir(parents=True, exist_ok=True)
    env.update({
        "CORE_API_ADDRESS": "127.0.0.1:0",
        "CORE_DB_DIR": str(tmp_path / "db"),
        "CORE_STORAGE_DISK_DIR": str(tmp_path / "data"),
        "CORE_FFMPEG_BINARY": ffmpeg,
        "CORE_WEBRTC_ENABLE": "true",
        "CORE_WEBRTC_UDP_MUX_PORT": "0",
        "CORE_DEMO_ENABLE": "false",
        "CORE_LOG_LEVEL": "info",
        "TMPDIR": str(tmp_path / "tmp"),
        "PYTHONPATH": str(ROOT),
        **extra,
    })
    return env


@asynccontextmanager
async def server_subprocess(env: dict[str, str], log: Path
                            ) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """``python -m trio_core`` with ``env`` (stderr appended to ``log``); yields it and its
    base URL once it listens (within 30 s). Killed (SIGKILL) on exit if still running."""
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "trio_core"], env=env, cwd=str(ROOT),
                                stdout=subprocess.PIPE, stderr=err)
    try:
        assert proc.stdout is not None
        with trio.fail_after(30):
            while True:
                line = await trio.to_thread.run_sync(proc.stdout.readline,
                                                     abandon_on_cancel=True)
                assert line, f"server exited: {log.read_text()[-2000:]}"
                if m := re.search(rb"trio-core listening on (http://\S+)", line):
                    break
        yield proc, m[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
