"""Interop matrix (issue 13): independent WebRTC stacks play every kind of source.

Sources (made with FFmpeg here, looped in real time): H264 Main with B-frames + AAC, H264
High with B-frames + AAC, H264 Constrained Baseline + AAC, VP8 + Opus. Clients: Debian's
Chromium and Debian's Firefox ESR (headless, Marionette), each in a private network namespace
with a plain RTCPeerConnection WHEP client, and aiortc (a subprocess). Firefox ESR without
OpenH264 offers no H264, so its H264 processes run with ``webrtc.video_codecs: ["h264",
"vp8"]`` and it plays their VP8 leg. A browser must decode ≥ 90 % of the frames the source
sent during the measuring window (the server counts them), aiortc and GStreamer ≥ 90 % of
25 fps; all must receive audio, and the server must have refused no resend (``srtp-protect``)
and failed no NACK repair it could make (``nack-miss``).

GStreamer webrtcbin (Debian's python3-gi, ``tests/helpers/gst_viewer.py``) plays them too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api
from tests.helpers.whep import wait_live, webrtc_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("interop")]

FPS = 25


@pytest.fixture(scope="session")
def sources(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The four source files, made once per test process (the ``interop`` group's tests run
    one after another in one xdist worker, between tests of other modules)."""
    return make_sources(ffmpeg, tmp_path_factory.mktemp("sources"))


def make_sources(ffmpeg: str, where: Path) -> dict[str, str]:
    video = ["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}:duration=4",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4"]
    h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", str(FPS), "-c:a", "aac"]
    recipes = {
        "main_b": (["-profile:v", "main", "-bf", "3", *h264], "mp4"),
        "high_b": (["-profile:v", "high", "-bf", "3", *h264], "mp4"),
        "cbaseline": (["-profile:v", "baseline", *h264], "mp4"),
        "vp8": (["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "600k",
                 "-g", str(FPS), "-c:a", "libopus"], "webm"),
    }
    out = {}
    for name, (codec, ext) in recipes.items():
        path = where / f"{name}.{ext}"
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *video, *codec,
                        str(path)], check=True, timeout=120)
        out[name] = str(path)
    return out


async def run_session(client: str, sources: dict[str, str], *extra: str) -> dict:
    argv = ["unshare", "-n", sys.executable, "-m", "tests.helpers.interop_session", client,
            json.dumps(sources), *extra]
    with trio.fail_after(300):
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      check=False)
    lines = proc.stdout.decode().strip().splitlines()
    assert lines, proc.stderr.decode()[-3000:]
    result = json.loads(lines[-1])
    print(json.dumps(result, indent=1))
    assert result["error"] is None, result
    assert set(result["cases"]) == set(sources)
    return result


def decoded_in_window(case: dict) -> int:
    """Frames that arrived during the window and were decoded (allowing the decoder to
    finish them after the window ended)."""
    first, later, settled = (case[k]["video"] for k in ("first", "later", "settled"))
    return min(settled["framesDecoded"] - first["framesDecoded"],
               later["framesReceived"] - first["framesReceived"])


def assert_clean(name: str, dropped: dict[str, int] | None) -> None:
    dropped = dropped or {}
    assert not dropped.get("srtp-protect") and not dropped.get("nack-miss"), (name, dropped)


@pytest.mark.browser
@pytest.mark.root
@pytest.mark.parametrize("browser", ["chromium", "firefox"])
async def test_browser_plays_every_source(browser: str, sources: dict[str, str]) -> None:
    """Firefox runs against a server whose WebRTC port is bound to 0.0.0.0 on a host with a
    second address on the interface, which alone is announced: Firefox checks that answers
    come from where it sent ("Peer address mismatch" otherwise; it fails with a single
    wildcard socket, checked by hand)."""
    client = "firefox-multihome" if browser == "firefox" else browser
    result = await run_session(client, sources)
    for name, case in result["cases"].items():
        assert case["error"] is None, (name, case)
        later = case["later"]["video"]
        decoded = decoded_in_window(case)
        # >= 90 % of the frames the source sent meanwhile (counted by the server)
        assert case["frames_sent"] > 0.5 * FPS * case["elapsed"], (name, case)
        assert decoded >= 0.9 * case["frames_sent"], (name, decoded, case)
        # Debian's Firefox ESR has no OpenH264: it gets the processes' second (VP8) leg
        h264 = name != "vp8" and browser == "chromium"
        assert later["codec"] == ("video/H264" if h264 else "video/VP8"), case
        assert case["later"]["audio"]["packetsReceived"] > 50, (name, case)
        assert_clean(name, case["server_dropped"])
        if browser == "firefox":  # it reached the second address only
            assert case["remote_address"].startswith("10.200.0."), case
    decisions = {n: " ".join(c["decisions"]) for n, c in result["cases"].items()}
    assert "B-frames" in decisions["main_b"] and "libx264" in decisions["main_b"]
    assert "copied" in decisions["cbaseline"] and "copied" in decisions["vp8"]


#: medooze's ``whip-whep`` WHEP client: a devDependency in web/package.json, installed by
#: ``pip install -e '.[test]'`` (setup.py runs ``npm ci`` in web/); never fetched by the test
WHEP_JS = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "whip-whep" / "whep.js"


@pytest.mark.browser
@pytest.mark.root
async def test_chromium_with_a_third_party_whep_library(sources: dict[str, str]) -> None:
    """medooze ``whip-whep`` in Chromium: Bearer viewer token on POST, trickle PATCHes and
    the DELETE of ``stop()`` — all accepted; the session ends by that DELETE."""
    picked = {k: sources[k] for k in ("main_b", "vp8")}
    assert WHEP_JS.is_file(), f"{WHEP_JS} missing: reinstall (pip install -e '.[test]')"
    result = await run_session("chromium-whip-whep", picked, str(WHEP_JS))
    for name, case in result["cases"].items():
        assert case["error"] is None, (name, case)
        decoded = decoded_in_window(case)
        assert decoded >= 0.9 * case["frames_sent"] > 0, (name, decoded, case)
        assert case["later"]["audio"]["packetsReceived"] > 50, (name, case)
        assert case["closed_by"] == "deleted by the client (WHEP DELETE)", case
        assert_clean(name, case["server_dropped"])


@pytest.mark.browser
@pytest.mark.root
async def test_gstreamer_webrtcbin_plays_every_source(sources: dict[str, str]) -> None:
    result = await run_session("gstreamer", sources)
    for name, case in result["cases"].items():
        assert case["error"] is None, (name, case)
        gst = case["gst"]
        assert gst["video_caps"] == ("VP8" if name == "vp8" else "H264"), case
        assert gst["video_frames"] >= 0.9 * FPS * gst["window"], (name, gst)
        assert gst["audio_buffers"] > 50, (name, gst)
        assert gst["delete_status"] == 204
        assert_clean(name, case["server_dropped"])


async def test_aiortc_plays_every_source(ffmpeg: str, tmp_path: Path,
                                        sources: dict[str, str]) -> None:
    duration = 4.0
    async with webrtc_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        for name, path in sources.items():
            cfg = {"id": name, "input": [{"id": "in", "address": path,
                                          "options": ["-re", "-stream_loop", "-1"]}],
                   "output": [{"id": "null", "address": "-",
                               "options": ["-map", "0:v", "-f", "null"]}],
                   "webrtc": {"enabled": True}}
            assert (await api.post("/api/v3/process", cfg)).status_code == 200
            await wait_live(api, name)
            result = await run_aiortc_viewer(
                ["--whep", f"{srv.url}/api/v3/process/{name}/whep", "--duration", str(duration)],
                timeout=90)
            assert result["error"] is None, (name, result)
            first = (result["first_frame_ms"] or 0) / 1000
            expected = FPS * max(0.0, duration - first)
            print(name, result["video_frames"], round(expected), result["audio_frames"])
            assert result["video_frames"] >= 0.9 * expected, (name, result)
            assert result["audio_frames"] > 50, (name, result)
            state = (await api.get(f"/api/v3/process/{name}/state")).json()["webrtc"]
            [closed] = state["closed_viewers"]
            assert_clean(name, closed["dropped"])
            assert (await api.delete(f"/api/v3/process/{name}")).status_code == 200


async def test_second_video_leg_serves_viewers_without_h264(ffmpeg: str, tmp_path: Path) -> None:
    """``webrtc.video_codecs: ["h264", "vp8"]``: an H264-only and a VP8-only viewer of the
    same process both decode video (Firefox without OpenH264 offers no H264)."""
    async with webrtc_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        cfg = {"id": "cam", "input": [
            {"id": "v", "address": f"testsrc2=size=320x240:rate={FPS}",
             "options": ["-re", "-f", "lavfi"]},
            {"id": "a", "address": "sine=frequency=440:sample_rate=48000",
             "options": ["-re", "-f", "lavfi"]}],
            "output": [{"id": "null", "address": "-", "options": ["-map", "0:v", "-f", "null"]}],
            "webrtc": {"enabled": True, "video_codecs": ["h264", "vp8"]}}
        resp = await api.post("/api/v3/process", cfg)
        assert resp.status_code == 200, resp.text
        state = await wait_live(api, "cam")
        with trio.fail_after(20):
            while len(state["webrtc"]["tracks"]) < 3:
                await trio.sleep(0.2)
                state = (await api.get("/api/v3/process/cam/state")).json()
        assert state["webrtc"]["tracks"] == {"video": "H264/90000", "audio": "opus/48000/2",
                                             "video2": "VP8/90000"}
        assert any(d.startswith("second video → libvpx VP8") for d in state["webrtc"]["decisions"])
        for codec in ("vp8", "h264"):
            result = await run_aiortc_viewer(
                ["--whep", f"{srv.url}/api/v3/process/cam/whep", "--duration", "3",
                 "--video-codec", codec], timeout=90)
            assert result["error"] is None, (codec, result)
            assert result["video_codec"] == f"video/{codec.upper()}", result
            assert result["video_frames"] >= 0.9 * FPS * (3 - result["first_frame_ms"] / 1000)
            assert result["audio_frames"] > 50
