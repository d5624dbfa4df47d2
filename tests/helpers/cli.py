"""The real ``trio-core`` console script as a subprocess: where it is, its environment, waiting
for its HTTP API, and the process tree it leaves behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx


def script() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m trio_core``."""
    exe = Path(sys.executable).with_name("trio-core")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("trio-core")
    return [found] if found else [sys.executable, "-m", "trio_core"]


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendants of ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def env_for(tmp_path: Path, ffmpeg: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORE_")}
    env.update({
        "CORE_DB_DIR": str(tmp_path / "db"),
        "CORE_STORAGE_DISK_DIR": str(tmp_path / "data"),
        "CORE_FFMPEG_BINARY": ffmpeg,
        "CORE_DEMO_ENABLE": "false",
        "CORE_WEBRTC_ENABLE": "false",
    })
    env.update(extra)
    return env


def wait_http(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.returncode}")
        try:
            return httpx.get(url, timeout=2.0)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
