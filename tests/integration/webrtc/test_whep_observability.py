"""Per-session observability (issue 13): structured log lines and recently closed viewers."""

from __future__ import annotations

import logging

import pytest
import trio

from bench.viewer import ViewerPool
from tests.helpers.api import Api
from tests.helpers.whep import wait_live, webrtc_process, webrtc_server, whep_offer


def events(caplog: pytest.LogCaptureFixture, session: str) -> dict[str, str]:
    """event name -> its log line, for one session id prefix."""
    found: dict[str, str] = {}
    for record in caplog.records:
        if record.name != "rtp.session":
            continue
        text = record.getMessage()
        if f"session={session[:8]} " in text:
            found.setdefault(text.split()[1], text)
    return found


async def test_session_events_are_logged_and_closed_viewers_stay_in_state(
        ffmpeg: str, tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rtp.session")
    async with trio.open_nursery() as nursery, webrtc_server(
            tmp_path, ffmpeg, **{"webrtc.pending_timeout": 2}) as srv:
        api = Api(srv.url)
        await api.post("/api/v3/process", webrtc_process("cam"))
        await wait_live(api, "cam")
        pool = ViewerPool(probes=0)
        await nursery.start(pool.run)
        v = pool.new_viewer()
        resp = await whep_offer(api, "cam", v.make_offer())
        assert resp.status_code == 201
        v.accept_answer(resp.text)
        assert await pool.establish(v)
        played = resp.headers["Location"].rsplit("/", 1)[1]
        # a second session that never does ICE: it must be told apart from a slow one
        silent = (await whep_offer(api, "cam", pool.new_viewer().make_offer()))
        abandoned = silent.headers["Location"].rsplit("/", 1)[1]
        await trio.sleep(2.5)
        state = (await api.get("/api/v3/process/cam/state")).json()["webrtc"]
        [live] = state["viewers"]
        assert (live["ice_state"], live["dtls_state"]) == ("connected", "connected")
        assert live["srtp_profile"].startswith("SRTP_")
        assert live["setup_seconds"] is not None
        assert (await api.delete(resp.headers["Location"])).status_code == 204

        state = (await api.get("/api/v3/process/cam/state")).json()["webrtc"]
        assert state["viewers"] == []
        closed = {c["id"]: c for c in state["closed_viewers"]}
        assert closed[played]["close_reason"] == "deleted by the client (WHEP DELETE)"
        assert closed[played]["packets_sent"] > 20 and closed[played]["closed_at"]
        assert closed[abandoned]["close_reason"] == "setup timeout (no ICE/DTLS)"
        assert (closed[abandoned]["ice_state"], closed[abandoned]["packets_sent"]) == ("new", 0)

        seen = events(caplog, played)
        for name in ("offer", "ice-connected", "dtls-connected", "first-media", "closed"):
            assert name in seen, (name, sorted(seen))
        assert "role=server" in seen["dtls-connected"] and "srtp=SRTP_" in seen["dtls-connected"]
        assert "source=cam" in seen["offer"] and "video:H264/90000" in seen["offer"]
        assert "WHEP DELETE" in seen["closed"] and "packets=" in seen["closed"]
        quiet = events(caplog, abandoned)
        assert "ice-connected" not in quiet and "setup timeout" in quiet["closed"]
        nursery.cancel_scope.cancel()
