"""Viewers behind firewalls (issue 21): browsers play over ICE-TCP with all UDP dropped, and
Chromium plays through Debian's coturn announced in WHEP Link headers.

Each test runs ``tests/helpers/ice_session.py`` in a private network namespace (``unshare
-n``, root, iproute2, nft; Debian's chromium, firefox-esr, coturn — ``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import sys

import pytest
import trio

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.root,
              pytest.mark.xdist_group("interop")]


async def run_scenario(scenario: str) -> dict:
    argv = ["unshare", "-n", sys.executable, "-m", "tests.helpers.ice_session", scenario]
    with trio.fail_after(150):
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      check=False)
    lines = proc.stdout.decode().strip().splitlines()
    assert lines, proc.stderr.decode()[-3000:]
    result = json.loads(lines[-1])
    assert result["error"] is None, result
    return result


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
async def test_browser_plays_over_ice_tcp_with_all_udp_dropped(browser: str) -> None:
    result = await run_scenario(f"{browser}-tcp")
    case, viewer = result["case"], result["viewer"]
    assert case["error"] is None, case
    first, later, settled = (case[k]["video"] for k in ("first", "later", "settled"))
    decoded = min(settled["framesDecoded"] - first["framesDecoded"],
                  later["framesReceived"] - first["framesReceived"])
    assert case["frames_sent"] > 0.5 * 25 * case["elapsed"], case
    assert decoded >= 0.9 * case["frames_sent"], (decoded, case)
    assert case["later"]["audio"]["packetsReceived"] > 50, case
    assert viewer["transport"] == "tcp", viewer  # the only path: UDP was dropped
    assert viewer["close_reason"] == "deleted by the client (WHEP DELETE)", viewer
    assert later["codec"] == ("video/H264" if browser == "chromium" else "video/VP8")


async def test_chromium_plays_through_coturn_announced_in_link_headers() -> None:
    """The player page reads the TURN server (REST credentials from the shared secret)
    from the WHEP Link header; coturn runs in its own namespace, Chromium's namespace
    reaches coturn and the HTTP API only (nft), so its media comes through the relay."""
    result = await run_scenario("chromium-turn")
    assert result["frames_later"] - result["frames_first"] >= 60, result  # ~25 fps for 3 s
    viewer = result["viewer"]
    assert viewer["remote_address"].startswith("10.201.0.2:"), viewer  # coturn's relay
    assert viewer["transport"] == "udp" and viewer["state"] == "connected", viewer


async def test_gstreamer_webrtcbin_plays_over_ice_tcp_with_all_udp_dropped() -> None:
    result = await run_scenario("gstreamer-tcp")
    gst, viewer = result["case"]["gst"], result["viewer"]
    assert result["case"]["error"] is None, result
    assert gst["video_caps"] == "H264" and gst["video_frames"] >= 0.9 * 25 * gst["window"], gst
    assert gst["audio_buffers"] > 50, gst
    assert viewer["transport"] == "tcp", viewer


async def test_chromium_restarts_ice_after_its_address_moved() -> None:
    """Chromium in its own namespace; its address moves; ``restartIce()`` + WHEP PATCH
    (If-Match: the ETag) → video resumes within 2 s, on the same session (no new POST)."""
    result = await run_scenario("chromium-restart")
    before, after = result["before"], result["after"]
    assert result["restart"] == {"ok": True, "etag_changed": True}, result
    assert result["resumed_after"] < 2.0, result
    assert after["id"] == before["id"] and result["sessions"] == 1, result
    assert before["remote_address"].startswith("10.200.0.2:"), before
    assert after["remote_address"].startswith("10.200.0.4:"), after  # the new candidate
    assert after["remote_address"] != before["remote_address"].replace(".2:", ".4:"), after
    assert after["ice_restarts"] == 1 and after["state"] == "connected", after
    assert after["packets_sent"] > before["packets_sent"]
    tracks_before = {k: t["ssrc"] for k, t in before["tracks"].items()}
    assert {k: t["ssrc"] for k, t in after["tracks"].items()} == tracks_before  # same SRTP stream
