"""WHEP admission control (issue 12): limits on connecting and connected viewers.

A flood of offers through the real server gets 503 + Retry-After beyond the limits, while a
viewer that was already connected keeps receiving; abandoned (never connected) sessions
expire after ``webrtc.pending_timeout`` and give their slot and memory back.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from bench.viewer import ViewerPool
from tests.helpers.api import Api
from tests.helpers.whep import wait_live, webrtc_process, webrtc_server, whep_offer
from trio_core.webrtc.subsystem import WebRTCSubsystem

#: longer than the flood of 400 offers takes on a loaded machine (the 4 admitted sessions
#: must still be pending when the last offer arrives)
PENDING_TIMEOUT = 10


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
async def test_post_flood_gets_503_while_a_viewer_keeps_playing(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery, webrtc_server(tmp_path, ffmpeg, **{
        "webrtc.max_pending_per_client": 4, "webrtc.max_pending_per_process": 50,
        "webrtc.max_pending": 50, "webrtc.pending_timeout": PENDING_TIMEOUT,
    }) as srv:
        api = Api(srv.url)
        await api.post("/api/v3/process", webrtc_process("cam"))
        await wait_live(api, "cam")
        pool = ViewerPool(probes=0)
        await nursery.start(pool.run)
        viewer = pool.new_viewer()
        resp = await whep_offer(api, "cam", viewer.make_offer())
        assert resp.status_code == 201, resp.text
        viewer.accept_answer(resp.text)
        assert await pool.establish(viewer)
        offer = pool.new_viewer().make_offer()  # never answered: every session stays pending

        statuses: list[int] = []
        refusals: list[httpx.Response] = []
        rss_before = rss_bytes()
        received_before = sum(t.received for t in viewer.tracks.values())
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            async def flood(n: int) -> None:
                for _ in range(n):
                    r = await client.post("/api/v3/process/cam/whep", content=offer,
                                          headers={"Content-Type": "application/sdp"})
                    statuses.append(r.status_code)
                    if r.status_code == 503 and len(refusals) < 5:
                        refusals.append(r)
            async with trio.open_nursery() as flooders:
                for _ in range(8):
                    flooders.start_soon(flood, 50)
        grown = rss_bytes() - rss_before
        print(f"flood: {statuses.count(201)} x 201, {statuses.count(503)} x 503, "
              f"RSS grew {grown / 1e6:.1f} MB")
        assert statuses.count(201) == 4, statuses
        assert statuses.count(503) == 400 - 4
        for r in refusals:
            assert int(r.headers["Retry-After"]) > 0
            body = r.json()
            assert body["code"] == 503
            assert "max_pending_per_client" in " ".join(body["details"])
        # stated bound: 400 offers, 4 admitted, cost the server (and this client) < 40 MB
        assert grown < 40e6
        with trio.fail_after(10):  # the connected viewer kept playing through the flood
            while sum(t.received for t in viewer.tracks.values()) < received_before + 50:
                await trio.sleep(0.1)
        source = srv.subsystem(WebRTCSubsystem).forwarder.sources["cam"]
        assert source.peers[resp.headers["Location"].rsplit("/", 1)[1]].live

        # the abandoned sessions expire (after pending_timeout) and give their slots back
        with trio.fail_after(PENDING_TIMEOUT + 10):
            while any(not p.live for p in source.peers.values()):
                await trio.sleep(0.2)
        assert len(source.peers) == 1
        again = await whep_offer(api, "cam", offer)
        assert again.status_code == 201, again.text
        nursery.cancel_scope.cancel()
