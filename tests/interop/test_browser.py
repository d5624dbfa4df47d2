"""Real headless Chromium plays a process over WHEP from the player page.

The session runs in a private network namespace (``unshare -n``, see
``tests/helpers/browser_session.py``): Chromium gathers no ICE candidates with loopback alone.
Needs root, ``ip`` (iproute2) and Debian's ``/usr/bin/chromium`` — ``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import sys

import pytest
import trio

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.root, pytest.mark.xdist_group("interop")]


async def test_chromium_plays_the_player_page_and_sees_the_end() -> None:
    argv = ["unshare", "-n", sys.executable, "-m", "tests.helpers.browser_session"]
    with trio.fail_after(150):
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      check=False)
    lines = proc.stdout.decode().strip().splitlines()
    assert lines, proc.stderr.decode()[-3000:]
    result = json.loads(lines[-1])
    assert result["error"] is None, result
    assert result["create_status"] == 200
    assert result["frames_later"] > result["frames_first"] > 0, result  # frames keep decoding
    assert result["frames_later"] - result["frames_first"] >= 30, result  # ~25 fps for 3 s
    assert result["audio_packets"] > 50, result  # Opus packets arrived (~50/s)
    assert "playing" in result["status_playing"].lower()
    assert result["state_viewers"] == 1
    assert result["stop_status"] == 200
    assert "ended" in result["status_ended"].lower()
    assert result["server_exit"] == 0
