"""The real ``trio-core`` console script as a subprocess: start, serve, SIGINT, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .test_api import free_port, tiny_process


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


def test_serve_and_sigint(tmp_path: Path, ffmpeg: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        script(), env=env_for(tmp_path, ffmpeg, CORE_API_ADDRESS=f"127.0.0.1:{port}"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        about = wait_http(base + "/api", proc).json()
        assert about["app"] == "datarhei-core"
        assert about["implementation"]["name"] == "trio-core"
        resp = httpx.post(base + "/api/v3/process", json=tiny_process("cli"), timeout=20)
        assert resp.status_code == 200, resp.text
        deadline = time.monotonic() + 15
        while httpx.get(base + "/api/v3/process/cli/state", timeout=5).json()["exec"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        ffmpegs = descendants(proc.pid)
        assert ffmpegs, "FFmpeg should run as a child of the server"

        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"trio-core listening on {base}" in out
    assert not any(alive(pid) for pid in ffmpegs), "FFmpeg outlived the server"
    db = json.loads((tmp_path / "db" / "db.json").read_text())
    assert "cli" in json.dumps(db)


def test_sigterm_with_python_m(tmp_path: Path, ffmpeg: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_core"],
        env=env_for(tmp_path, ffmpeg, CORE_API_ADDRESS=f"127.0.0.1:{port}"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api", proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "trio-core listening on" in out


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"CORE_API_ADDRESS": "0.0.0.0:0"}, "api.allow_public_bind"),
        ({"CORE_API_ADDRESS": "127.0.0.1:99999"}, "CORE_API_ADDRESS"),
        ({"CORE_WEBRTC_PUBLIC_IP": "not-an-ip"}, "webrtc.public_ip"),
        ({"CORE_API_AUTH_ENABLE": "true"}, "api.auth.username"),
        ({"CORE_FFMPEG_BINARY": "/nonexistent/ffmpeg"}, "ffmpeg.binary"),
    ],
)
def test_refuses_to_start(tmp_path: Path, ffmpeg: str, extra: dict[str, str], fragment: str) -> None:
    result = subprocess.run(
        script(), env=env_for(tmp_path, ffmpeg, **extra), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert fragment in result.stderr
    assert "listening" not in result.stdout


def test_port_in_use(tmp_path: Path, ffmpeg: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            script(), env=env_for(tmp_path, ffmpeg, CORE_API_ADDRESS=f"127.0.0.1:{port}"),
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 2, result.stderr
    assert "cannot listen" in result.stderr


def test_config_file_option(tmp_path: Path, ffmpeg: str) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"api": {"address": "0.0.0.0:0"}}))
    result = subprocess.run(
        [*script(), "--config", str(cfg)], env=env_for(tmp_path, ffmpeg),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "refusing to listen" in result.stderr
    cfg.write_text(json.dumps({"api": {"address": 12}}))
    result = subprocess.run(
        [*script(), "--config", str(cfg)], env=env_for(tmp_path, ffmpeg),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "api.address" in result.stderr and str(cfg) in result.stderr
