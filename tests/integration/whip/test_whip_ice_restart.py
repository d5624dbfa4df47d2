"""ICE restart of a WHIP publisher (issue 21's mechanism for publishers): an aiortc publisher
(an independent WebRTC stack, ``tests/helpers/aiortc_publisher.py``) restarts ICE over
PATCH and moves to a new local port while an aiortc WHEP viewer decodes the channel; a
WHEP viewer of the channel restarts ICE over PATCH and plays with the new credentials."""

from __future__ import annotations

import pytest
import trio

from bench.ice_tcp import MiniViewer
from tests.helpers.aiortc_publisher import aiortc_publisher
from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api
from tests.helpers.whip import wait_published, whip_server

TOKEN = "tok"
FPS = 30  # the aiortc publisher's test picture
FRAG = "application/trickle-ice-sdpfrag"


@pytest.mark.slow
async def test_aiortc_publisher_restarts_ice_and_the_viewer_keeps_decoding(
        ffmpeg: str, tmp_path) -> None:
    async with whip_server(tmp_path, ffmpeg, **{"whip.token": TOKEN}) as srv:
        api = Api(srv.url)
        async with aiortc_publisher(f"{srv.url}/whip/cam", TOKEN) as pub:
            published = await pub.message("published")
            assert published["status"] == 201, published
            before = await wait_published(api, "cam", packets=30)
            assert before["ice_restarts"] == 0 and before["transport"] == "udp", before
            viewing = trio.Event()
            restarted: dict = {}

            def progress(p: dict) -> None:
                if p.get("video_frames", 0) > 0:
                    viewing.set()

            async def restart_while_viewing() -> None:
                await viewing.wait()
                await trio.sleep(1.5)
                restarted.update(await pub.command("restart", "restart"))
                restarted["entry"] = await wait_published(api, "cam")

            duration = 5.0
            async with trio.open_nursery() as nursery:
                nursery.start_soon(restart_while_viewing)
                view = await run_aiortc_viewer(
                    ["--whep", f"{srv.url}/whep/cam", "--duration", str(duration)],
                    timeout=60, on_progress=progress)
            assert restarted["status"] == 200, restarted
            assert restarted["etag_changed"] and restarted["new_check_ok"] is True, restarted
            assert restarted["old_check_answered"] is False, restarted  # old ufrag forgotten
            entry = restarted["entry"]
            # the same publisher (session), Source and viewer; its path moved to the new port
            assert entry["ice_restarts"] == 1 and entry["publishers"] == 1, entry
            assert entry["remote_address"] == f"127.0.0.1:{restarted['new_port']}", entry
            assert before["remote_address"] == f"127.0.0.1:{restarted['old_port']}", before
            assert entry["viewers"] == 1 and entry["packets"] > before["packets"]
            assert view["error"] is None and view["connected"], view
            assert view["video_frames"] >= 0.9 * FPS * duration, view
            assert view["audio_samples"] >= 0.9 * 48000 * duration, view
            await trio.sleep(1.0)  # media keeps coming on the new path
            after = await wait_published(api, "cam")
            assert after["packets"] > entry["packets"] + FPS, after
            assert after["remote_address"] == entry["remote_address"]
            # a WHEP viewer of the channel restarts ICE too (the same PATCH code) and plays
            # with the new credentials
            viewer = MiniViewer("udp")
            resp = await api.request("POST", "/whep/cam", content=viewer.offer(),
                                     headers={"Content-Type": "application/sdp"})
            assert resp.status_code == 201, resp.text
            viewer.accept(resp.text)
            viewer.ufrag = "moved01"
            got = await api.request("PATCH", resp.headers["Location"], content=(
                f"a=ice-ufrag:{viewer.ufrag}\r\na=ice-pwd:{viewer.pwd}\r\n"),
                headers={"Content-Type": FRAG, "If-Match": resp.headers["ETag"]})
            assert got.status_code == 200 and got.headers["ETag"] != resp.headers["ETag"]
            viewer.r_ufrag = next(x[12:] for x in got.text.splitlines()
                                  if x.startswith("a=ice-ufrag:"))
            viewer.r_pwd = next(x[10:] for x in got.text.splitlines()
                                if x.startswith("a=ice-pwd:"))
            with trio.fail_after(10):
                await viewer.establish()
                assert len(await viewer.receive_media(20)) == 20
            stopped = await pub.command("stop", "stopped")
            assert stopped["delete_status"] == 204
