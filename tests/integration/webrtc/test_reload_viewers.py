"""WebRTC viewers across ``GET /api/v3/config/reload`` (issue 22 item 13): real server under
``serve_reloading``, real FFmpeg, a real WHEP viewer (aiortc, decoding).

* the WebRTC settings did not change: the same viewer session keeps decoding frames after
  the reload (no new offer; its WHEP resource still answers DELETE);
* a ``webrtc.*`` setting changed: the viewer is told at once (DTLS close_notify, RTCP BYE:
  its DTLS transport is closed and its tracks end within a couple of seconds), instead of
  noticing ~40 s later.
"""

from __future__ import annotations

import socket
import time
from functools import partial
from typing import Any

import pytest
import trio

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api, make_config
from tests.helpers.leaks import child_pids, open_fds, task_count
from tests.helpers.whep import wait_live, webrtc_process, webrtc_server
from trio_core.config import v3_mapping
from trio_core.reload import serve_reloading
from trio_core.server import Running

pytestmark = pytest.mark.slow


async def _watch_and_reload(tmp_path, ffmpeg: str, change: dict[str, Any], duration: float
                            ) -> tuple[dict[str, Any], list[dict[str, Any]], float, float,
                                       list[Running]]:
    """Serve (reloading), play ``cam`` with an aiortc viewer, PUT ``change`` into the config
    and reload once the viewer decodes. Returns (result, progress lines, monotonic time of
    the reload request, time the process was live again, runs)."""
    # a fixed mux port, bound again after the reload: the viewer cannot learn of the end
    # from an ICMP port unreachable (no such luck across the internet)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(tmp_path, ffmpeg, **{"webrtc.enable": True,
                                              "webrtc.udp_mux_port": port})
    fds_before, tasks_before = open_fds(), task_count()
    runs: list[Running] = []
    progress: list[dict[str, Any]] = []
    marks: dict[str, float] = {}
    result: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        first: Running = await nursery.start(partial(
            serve_reloading, config, load=v3_mapping.load, on_running=runs.append))
        try:
            api = Api(first.url)
            assert (await api.post("/api/v3/process", webrtc_process("cam"))).status_code == 200
            await wait_live(api, "cam")
            put = await api.put("/api/v3/config", {"version": 3, **change})
            assert put.status_code == 200, put.text

            async def viewer() -> None:
                result.update(await run_aiortc_viewer(
                    ["--whep", f"{first.url}/api/v3/process/cam/whep", "--duration",
                     str(duration)], timeout=90, on_progress=progress.append))

            async def reload() -> None:
                fwd = first.services.forwarder
                assert fwd is not None
                with trio.fail_after(30):  # decoding, and the server freed its DTLS state
                    while (not progress or progress[-1]["video_frames"] < 10
                           or not fwd.sources["cam"].peers
                           or not all(p.dtls.released
                                      for p in fwd.sources["cam"].peers.values())):
                        await trio.sleep(0.05)
                marks["reload"] = time.monotonic()
                resp = await api.get("/api/v3/config/reload")
                assert resp.status_code == 200
                with trio.fail_after(30):
                    while len(runs) < 2:
                        await trio.sleep(0.05)
                await wait_live(Api(runs[1].url), "cam")
                marks["live"] = time.monotonic()

            async with trio.open_nursery() as both:
                both.start_soon(viewer)
                both.start_soon(reload)
        finally:
            runs[-1].shutdown()
    # serve_reloading returned: the carried forwarder (socket, Sources, Peers) is gone too
    assert open_fds() == fds_before and task_count() == tasks_before
    return result, progress, marks["reload"], marks["live"], runs


async def test_a_reload_with_the_same_webrtc_settings_keeps_the_viewer(ffmpeg: str,
                                                                       tmp_path) -> None:
    result, progress, reload_at, live_at, runs = await _watch_and_reload(
        tmp_path, ffmpeg, {"name": "renamed"}, duration=12)
    assert result["error"] is None, result
    assert result["connected"], result
    assert len(runs) == 2 and runs[1].services is not runs[0].services
    # the forwarder (and with it the viewer's session) is the one from before the reload
    assert runs[1].services.forwarder is runs[0].services.forwarder
    # the same session keeps decoding after the process came back
    after = [p for p in progress if p["t"] >= live_at + 0.5]
    assert after, (progress[-1], live_at)
    assert after[-1]["video_frames"] - after[0]["video_frames"] >= 25, (after[0], after[-1])
    assert all(p["dtls_state"] == "connected" and p["state"] == "connected" and not p["ended"]
               for p in progress), next(p for p in progress if p["dtls_state"] != "connected"
                                        or p["ended"])
    assert result["delete_status"] == 204  # the WHEP resource lives on in the new serve
    assert not child_pids()


async def test_a_reload_that_changes_webrtc_settings_tells_the_viewer_at_once(
        ffmpeg: str, tmp_path) -> None:
    result, progress, reload_at, live_at, runs = await _watch_and_reload(
        tmp_path, ffmpeg, {"webrtc": {"max_viewers": 999}}, duration=8)
    assert len(runs) == 2 and runs[1].services.config["webrtc.max_viewers"] == 999
    assert runs[1].services.forwarder is not runs[0].services.forwarder
    assert result["connected"], result
    closed = next((p for p in progress if p["dtls_state"] == "closed"), None)
    assert closed is not None, progress[-1]  # the DTLS close_notify arrived
    assert closed["t"] - reload_at < 3.0, closed["t"] - reload_at
    # its tracks ended (BYE / transport closed) — aiortc may mark them a sample after it saw
    # the close_notify (CI once sampled "closed" with 0 tracks ended yet)
    ended = next((p for p in progress if p["ended"] >= 1), None)
    assert ended is not None, progress[-1]
    assert ended["t"] - reload_at < 3.0, ended["t"] - reload_at
    assert not child_pids()


async def test_a_server_stop_tells_the_viewer_at_once(ffmpeg: str, tmp_path) -> None:
    """The same goodbye when the server stops for good (after the DTLS state was freed)."""
    progress: list[dict[str, Any]] = []
    marks: dict[str, float] = {}
    async with webrtc_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        assert (await api.post("/api/v3/process", webrtc_process("cam"))).status_code == 200
        await wait_live(api, "cam")
        fwd = srv.services.forwarder
        assert fwd is not None

        async def stop_when_watching() -> None:
            with trio.fail_after(30):
                while (not progress or progress[-1]["video_frames"] < 10
                       or not fwd.sources["cam"].peers
                       or not all(p.dtls.released for p in fwd.sources["cam"].peers.values())):
                    await trio.sleep(0.05)
            marks["stop"] = time.monotonic()
            srv.shutdown()

        async with trio.open_nursery() as both:
            both.start_soon(stop_when_watching)
            result = await run_aiortc_viewer(
                ["--whep", f"{srv.url}/api/v3/process/cam/whep", "--duration", "6"],
                timeout=60, on_progress=progress.append)
    assert result["connected"], result
    closed = next((p for p in progress if p["dtls_state"] == "closed"), None)
    assert closed is not None, progress[-1]
    assert closed["t"] - marks["stop"] < 3.0
