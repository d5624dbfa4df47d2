"""Idle memory: a configuration does not load what it does not use (issue 23, Memory).

A real idle ``python -m trio_core`` (no process, no viewer, no login; API auth off), with
``webrtc.enable`` on (the default) or off, must not map the WebRTC media stack (cryptography's
Rust bindings, which pyOpenSSL and PyJWT pull in; pylibsrtp): those were ~20 MB of idle RSS.
The import path of the server start (``trio_core.cli``, ``server``, ``reload``, and
``rtp.forwarder`` for WebRTC on) must not import aioice, pyOpenSSL, cryptography, pylibsrtp,
the Source/DTLS/Peer modules, PyJWT or prometheus_client (only with
``metrics.enable_prometheus`` or the first WebRTC viewer's setup-time histogram).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.server_process import ROOT, server_env, server_subprocess


def mapped(pid: int) -> set[str]:
    """Which of the WebRTC stack's packages appear in the file mappings of ``pid``."""
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    return {h for h in ("cryptography", "pylibsrtp") if f"/{h}/" in maps}


def vm_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_start_path_imports_no_webrtc_media_stack_or_jwt() -> None:
    code = ("import sys, trio_core.cli, trio_core.server, trio_core.reload, rtp.forwarder\n"
            "print(' '.join(m for m in ('aioice', 'OpenSSL', 'cryptography', 'jwt',"
            " 'pylibsrtp', 'rtp.source', 'rtp.dtls', 'rtp.peer', 'prometheus_client')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    assert out == ""


def test_start_path_imports_no_framework_it_does_not_run() -> None:
    """The API runs on trio_core.web over trio_core.httpd (werkzeug's sans-IO parts): no
    Quart/Flask stack (Jinja2, Click, aiofiles, Blinker) and no hypercorn protocol stack is
    loaded — they cost 13 MB of idle RSS before issue 23."""
    code = ("import sys, trio_core.cli, trio_core.server, trio_core.reload\n"
            "print(' '.join(m for m in ('quart', 'quart_trio', 'flask', 'jinja2', 'click',"
            " 'aiofiles', 'blinker', 'hypercorn', 'h2', 'wsproto') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    assert out == ""


@pytest.mark.parametrize("webrtc", [False, True])
async def test_idle_server_does_not_map_what_it_does_not_use(
        tmp_path: Path, ffmpeg: str, webrtc: bool) -> None:
    env = server_env(tmp_path, ffmpeg, CORE_WEBRTC_ENABLE=str(webrtc).lower(),
                     CORE_API_AUTH_ENABLE="false")
    async with server_subprocess(env, tmp_path / "server.log") as (proc, _url):
        libs, rss = mapped(proc.pid), vm_rss_mb(proc.pid)
    assert libs == set(), libs
    assert rss < 45, rss  # bench.memory: 38-39 MB (issue 23: trio_core.web); 49 on Quart, 76 before
