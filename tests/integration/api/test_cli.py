"""The real ``trio-core`` console script as a subprocess: start, serve, SIGINT, exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.api import free_port, tiny_process
from tests.helpers.cli import alive, descendants, env_for, script, wait_http


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


