"""Headless Chromium plays an HLS output (FFmpeg -> {memfs} -> /memfs) through the dashboard's
HLS player, which loads hls.js installed from npm (``web/``, copied by ``setup.py``).
Needs Debian's ``/usr/bin/chromium`` (``.ci/run`` installs it) and npm at install time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from tests.helpers.api import Api, make_config, running_server, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("interop")]


def process(pid: str) -> dict[str, object]:
    return {
        "id": pid, "reference": "browser",
        "options": ["-loglevel", "level+info", "-y"],
        "input": [{"id": "input_0", "address": "testsrc2=size=320x240:rate=25",
                   "options": ["-re", "-f", "lavfi"]}],
        "output": [{
            "id": "output_0", "address": "{memfs}/{processid}.m3u8",
            "options": ["-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast",
                        "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", "25",
                        "-threads", "1", "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
                        "-hls_flags", "delete_segments", "-method", "PUT"],
            "cleanup": [{"pattern": "memfs:/{processid}**", "max_files": 12,
                         "purge_on_delete": True}],
        }],
        "reconnect": False, "autostart": True,
    }


async def test_chromium_plays_hls_from_the_dashboard(tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg, **{"webrtc.enable": True})) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        api = Api(base)
        library = await api.get("/assets/hls.min.js")
        assert library.status_code == 200 and b"hls.js" in library.content, \
            "hls.js missing: install with npm present (setup.py copies it from web/)"
        assert (await api.post("/api/v3/process", process("tv"))).status_code == 200

        async def ready() -> bool:
            resp = await api.get("/memfs/tv.m3u8")
            return resp.status_code == 200 and resp.text.count(".ts") >= 2

        await wait_for(ready, timeout=60)
        with trio.fail_after(150):
            proc = await trio.run_process(
                [sys.executable, "-m", "tests.helpers.hls_browser_session", base, "tv"],
                capture_stdout=True, capture_stderr=True, check=False)
        lines = proc.stdout.decode().strip().splitlines()
        assert lines, proc.stderr.decode()[-3000:]
        result = json.loads(lines[-1])
        assert result["error"] is None, result
        assert "HLS" in result["link_text"]
        first, later = result["first"], result["later"]
        assert first["hlsjs"] is True, result  # the npm-installed library was loaded
        assert later["width"] == 320, result  # frames of the source were decoded
        assert later["time"] - first["time"] > 1.5, result  # playback advances
        assert later["frames"] > first["frames"] > 0, result
        assert "playing" in later["status"], result
