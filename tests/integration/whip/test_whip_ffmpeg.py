"""WHIP ingest with FFmpeg's ``-f whip`` muxer (an independent WHIP client) as publisher and
aiortc (an independent WebRTC stack) as WHEP viewer of the channel."""

from __future__ import annotations

import pytest
import trio

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api
from tests.helpers.whip import (
    FPS,
    ffmpeg_publisher,
    ffmpeg_whip_argv,
    wait_published,
    whip_server,
)

TOKEN = "s3cret-whip"


@pytest.mark.slow
@pytest.mark.parametrize("dtls_active", [False, True], ids=["ffmpeg-passive", "ffmpeg-active"])
async def test_ffmpeg_publishes_and_aiortc_plays(ffmpeg: str, tmp_path, dtls_active: bool
                                                 ) -> None:
    async with whip_server(tmp_path, ffmpeg, **{"whip.token": TOKEN}) as srv:
        api = Api(srv.url)
        argv = ffmpeg_whip_argv(f"{srv.url}/whip/cam", token=TOKEN, dtls_active=dtls_active)
        async with ffmpeg_publisher(argv) as proc:
            entry = await wait_published(api, "cam", packets=50)
            assert entry["dtls_role"] == ("server" if dtls_active else "client")
            assert entry["codecs"] == {"video": "H264/90000", "audio": "opus/48000/2"}
            assert entry["remote_address"].startswith("127.0.0.1:")
            duration = 4.0
            result = await run_aiortc_viewer(
                ["--whep", f"{srv.url}/whep/cam", "--duration", str(duration)], timeout=60)
            assert result["error"] is None, (result, bytes(proc.stderr_tail)[-2000:])
            assert result["connected"]
            assert result["video_frames"] >= 0.9 * FPS * duration, result
            assert (result["width"], result["height"]) == (320, 240)
            assert result["audio_samples"] >= 48000, result
            assert result["first_frame_ms"] is not None and result["first_frame_ms"] < 1500
            assert result["delete_status"] == 204
            entry = await wait_published(api, "cam")
            assert entry["bitrate_kbit"] > 100, entry
            assert entry["plis_sent"] >= 1, entry  # a new viewer asks the publisher for one


def hls_from_whip(pid: str, name: str) -> dict:
    return {
        "id": pid,
        "options": ["-loglevel", "level+info"],
        "input": [{"id": "in", "address": f"{{whip,name={name}}}", "options": []}],
        "output": [{
            "id": "hls", "address": "{memfs}/{processid}.m3u8",
            "options": ["-map", "0:v", "-c:v", "copy", "-f", "hls", "-hls_time", "1",
                        "-hls_list_size", "4", "-hls_flags", "delete_segments",
                        "-hls_segment_filename", "{memfs}/{processid}_%04d.ts"],
        }],
        "reconnect": True,
        "reconnect_delay_seconds": 1,
    }


@pytest.mark.slow
async def test_whip_channel_as_process_input_writes_hls(ffmpeg: str, tmp_path) -> None:
    async with whip_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        async with ffmpeg_publisher(ffmpeg_whip_argv(f"{srv.url}/whip/cam")):
            await wait_published(api, "cam", packets=50)
            assert (await api.post("/api/v3/process", hls_from_whip("rec", "cam"))
                    ).status_code == 200
            with trio.fail_after(20):
                while True:
                    resp = await api.get("/memfs/rec.m3u8")
                    if resp.status_code == 200 and resp.text.count(".ts") >= 2:
                        break
                    await trio.sleep(0.3)
            cmd = (await api.get("/api/v3/process/rec/state")).json()["command"]
            assert any(a.startswith("http://127.0.0.1:") and a.endswith("/cam.sdp")
                       for a in cmd), cmd
            reader = await trio.run_process(
                [ffmpeg, "-hide_banner", "-nostdin", "-i",
                 f"http://127.0.0.1:{srv.port}/memfs/rec.m3u8", "-frames:v", "40", "-f",
                 "null", "-"], capture_stdout=True, capture_stderr=True, check=False)
            log = reader.stderr.decode(errors="replace")
            assert reader.returncode == 0, log[-2000:]
            assert "frame=   40" in log or "frame=40" in log.replace(" ", ""), log[-2000:]
            assert "320x240" in log


async def wait_unpublished(api: Api, name: str, timeout: float = 15.0) -> dict:
    with trio.fail_after(timeout):
        while True:
            for entry in (await api.get("/api/v3/whip")).json():
                if entry["name"] == name and not entry["publishing"]:
                    return entry
            await trio.sleep(0.1)


@pytest.mark.slow
async def test_viewer_stays_when_the_publisher_stops_and_comes_back(ffmpeg: str, tmp_path
                                                                    ) -> None:
    async with whip_server(tmp_path, ffmpeg, **{"whip.timeout": 2}) as srv:
        api = Api(srv.url)
        url = f"{srv.url}/whip/cam"
        progress: list[dict] = []
        result: dict = {}

        async def view() -> None:
            result.update(await run_aiortc_viewer(
                ["--whep", f"{srv.url}/whep/cam", "--duration", "11"], timeout=60,
                on_progress=progress.append))

        async with trio.open_nursery() as nursery:
            async with ffmpeg_publisher(ffmpeg_whip_argv(url)):
                await wait_published(api, "cam", packets=50)
                nursery.start_soon(view)
                with trio.fail_after(15):
                    while not progress or progress[-1]["video_frames"] < 25:
                        await trio.sleep(0.1)
                first = progress[-1]["video_frames"]
            # the first publisher is gone (FFmpeg quit): the name frees, the viewer stays
            entry = await wait_unpublished(api, "cam")
            assert entry["viewers"] == 1, entry
            stalled = progress[-1]["video_frames"]
            async with ffmpeg_publisher(ffmpeg_whip_argv(url)):
                entry = await wait_published(api, "cam", packets=50)
                assert entry["publishers"] == 2
                with trio.fail_after(20):
                    while not result:
                        await trio.sleep(0.1)
        assert result["error"] is None, result
        assert first >= 25
        after = result["video_frames"] - stalled
        assert after >= 2 * FPS, (first, stalled, result)  # video again from the new publisher
        assert progress[-1]["ended"] == 0, progress[-1]  # its tracks never ended


@pytest.mark.slow
async def test_silent_publisher_is_dropped_and_counted_as_a_session(ffmpeg: str, tmp_path
                                                                    ) -> None:
    """SIGSTOP the publishing FFmpeg: no RTP for whip.timeout -> dropped, name freed; while
    it published it was an active session of the ``whip`` collector in /metrics. Garbage
    on the mux port meanwhile disturbs nothing."""
    import os
    import signal
    import socket

    from prometheus_client.parser import text_string_to_metric_families

    def whip_sessions(text: str) -> float:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "session_active" and s.labels.get("collector") == "whip":
                    return s.value
        raise AssertionError("no session_active{collector=whip}")

    async with whip_server(tmp_path, ffmpeg, **{"whip.timeout": 2,
                                                "sessions.ip_ignorelist": [],
                                                "metrics.enable_prometheus": True}) as srv:
        api = Api(srv.url)
        port = srv.services.forwarder.port  # type: ignore[union-attr]
        async with ffmpeg_publisher(ffmpeg_whip_argv(f"{srv.url}/whip/cam")) as proc:
            await wait_published(api, "cam", packets=50)
            assert whip_sessions((await api.get("/metrics")).text) == 1
            sessions = (await api.get("/api/v3/session/active?collectors=whip")).json()
            assert [s["reference"] for s in sessions["whip"]] == ["cam"], sessions
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
                for first in (0, 1, 22, 64, 128, 200, 255):  # STUN, DTLS, RTP-looking bytes
                    for size in (1, 20, 100, 1200):
                        junk.sendto(bytes([first]) + os.urandom(size - 1), ("127.0.0.1", port))
            before = (await wait_published(api, "cam"))["packets"]
            await trio.sleep(0.5)
            assert (await wait_published(api, "cam"))["packets"] > before + 10
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                with trio.fail_after(6):
                    while (await api.get("/api/v3/whip")).json()[0]["publishing"]:
                        await trio.sleep(0.1)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            assert whip_sessions((await api.get("/metrics")).text) == 0
