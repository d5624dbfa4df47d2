"""RTMP publishers and players are sessions of the ``rtmp`` collector (Core's ``rtmp.go``).

A real FFmpeg publishes, a real FFmpeg plays: ``/api/v3/session/active?collectors=rtmp``
lists the publisher (id = the path, ``local`` = ``publish:<path>``) and the player (id =
``ip:port``, ``local`` = ``play:<path>``) with growing byte counters; when both are gone the
history summary keeps their totals. Core ignores loopback clients by default
(``sessions.ip_ignorelist``), so the test clears that list.
"""

from __future__ import annotations

import trio

from tests.helpers.api import Api
from tests.helpers.rtmp import play_frames, publisher_argv, rtmp_server, start_ffmpeg, wait_listed


async def active(api: Api) -> list[dict]:
    resp = await api.get("/api/v3/session/active?collectors=rtmp")
    assert resp.status_code == 200
    return resp.json()["rtmp"]


async def test_publisher_and_player_are_rtmp_sessions(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery, rtmp_server(
            tmp_path, ffmpeg, **{"sessions.ip_ignorelist": []}) as (srv, port):
        api = Api(srv.url)
        publisher = await start_ffmpeg(
            nursery, publisher_argv(ffmpeg, f"rtmp://127.0.0.1:{port}/live/cam.stream"))
        await wait_listed(api, "/live/cam.stream")
        with trio.fail_after(20):
            while not (sessions := await active(api)) or sessions[0]["bytes_rx"] == 0:
                await trio.sleep(0.2)
        [pub] = sessions
        assert pub["id"] == "/live/cam.stream"
        assert pub["local"] == "publish:/live/cam.stream"
        assert pub["reference"] == "live/cam"
        first_rx = pub["bytes_rx"]

        seen_player: dict = {}

        async def watch_player() -> None:
            while True:
                for sess in await active(api):
                    if sess["local"].startswith("play:") and sess["bytes_tx"] > 0:
                        seen_player.update(sess)
                await trio.sleep(0.2)

        async with trio.open_nursery() as watch:
            watch.start_soon(watch_player)
            rc, frames, err = await play_frames(
                ffmpeg, f"rtmp://127.0.0.1:{port}/live/cam.stream", 3)
            watch.cancel_scope.cancel()
        assert rc == 0 and frames > 0, err[-2000:]
        assert seen_player, "the player never appeared as an rtmp session"
        assert seen_player["local"] == "play:/live/cam.stream"
        assert seen_player["id"].startswith("127.0.0.1:")

        # the player is gone; the publisher's counter went on growing
        with trio.fail_after(10):
            while True:
                sessions = await active(api)
                if [s["id"] for s in sessions] == ["/live/cam.stream"] and \
                        sessions[0]["bytes_rx"] > first_rx:
                    break
                await trio.sleep(0.2)
        publisher.terminate()
        await wait_listed(api, "/live/cam.stream", present=False)
        with trio.fail_after(10):
            while await active(api):
                await trio.sleep(0.2)
        summary = (await api.get("/api/v3/session?collectors=rtmp")).json()["rtmp"]["summary"]
        assert summary["sessions"] >= 2
        assert summary["traffic_rx_mb"] >= 0 and summary["traffic_tx_mb"] >= 0


async def test_loopback_clients_are_ignored_by_default(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery, rtmp_server(tmp_path, ffmpeg) as (srv, port):
        api = Api(srv.url)
        publisher = await start_ffmpeg(
            nursery, publisher_argv(ffmpeg, f"rtmp://127.0.0.1:{port}/live/x"))
        await wait_listed(api, "/live/x")
        await trio.sleep(1.0)
        assert await active(api) == []
        publisher.terminate()
