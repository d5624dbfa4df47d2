"""WHEP viewer limits count sessions still connecting (issue 22 item 10).

``webrtc.max_viewers`` and ``webrtc.max_viewers_per_process`` bound every admitted viewer,
connected or not yet: real offers through a real server, real lightweight viewers
(``bench/viewer.py``) that connect and receive media.
"""

from __future__ import annotations

import trio

from bench.viewer import ViewerPool
from tests.helpers.api import Api, assert_error
from tests.helpers.whep import wait_live, webrtc_process, webrtc_server, whep_offer


async def test_connecting_sessions_count_toward_the_viewer_limits(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery, webrtc_server(tmp_path, ffmpeg, **{
        "webrtc.max_viewers": 3, "webrtc.max_viewers_per_process": 2,
    }) as srv:
        api = Api(srv.url)
        for pid in ("cam", "cam2"):
            assert (await api.post("/api/v3/process", webrtc_process(pid))).status_code == 200
        for pid in ("cam", "cam2"):
            await wait_live(api, pid)
        pool = ViewerPool(probes=0)
        await nursery.start(pool.run)
        locations: list[str] = []
        for _ in range(2):  # two connected viewers of cam
            viewer = pool.new_viewer()
            resp = await whep_offer(api, "cam", viewer.make_offer())
            assert resp.status_code == 201, resp.text
            viewer.accept_answer(resp.text)
            assert await pool.establish(viewer)
            locations.append(resp.headers["Location"])

        # two offers to cam2 at once: the first is admitted (3 viewers), the second is not,
        # although the first has not connected yet
        first, second = pool.new_viewer(), pool.new_viewer()
        admitted = await whep_offer(api, "cam2", first.make_offer())
        assert admitted.status_code == 201, admitted.text
        refused = await whep_offer(api, "cam2", second.make_offer())
        body = assert_error(refused, 503)
        assert "webrtc.max_viewers = 3" in " ".join(body["details"]), body
        assert int(refused.headers["Retry-After"]) > 0
        # the admitted one connects and plays: exactly 3 viewers receive media
        first.accept_answer(admitted.text)
        assert await pool.establish(first)
        with trio.fail_after(10):
            while not all(sum(t.received for t in v.tracks.values()) > 10
                          for v in pool.viewers if v is not second):
                await trio.sleep(0.1)
        assert sum(t.received for t in second.tracks.values()) == 0

        # per process: cam2 holds 1 connected + 1 connecting viewer, a third is refused
        assert (await api.delete(locations[0])).status_code == 204  # frees one overall slot
        third = await whep_offer(api, "cam2", pool.new_viewer().make_offer())
        assert third.status_code == 201, third.text  # stays connecting
        fourth = await whep_offer(api, "cam2", pool.new_viewer().make_offer())
        body = assert_error(fourth, 503)
        assert "webrtc.max_viewers_per_process = 2" in " ".join(body["details"]), body
        nursery.cancel_scope.cancel()
