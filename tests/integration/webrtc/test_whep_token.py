"""``webrtc.token``: enforced whenever set, carried into the session URL (issues 12, 13)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import trio

from bench.viewer import ViewerPool
from tests.helpers.api import Api
from tests.helpers.whep import wait_live, webrtc_process, webrtc_server, whep_offer
from trio_core.webrtc.subsystem import WebRTCSubsystem

FRAG = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"


def session_ids(srv, process_id: str) -> set[str]:  # noqa: ANN001
    return set(srv.subsystem(WebRTCSubsystem).forwarder.sources[process_id].peers)


async def test_token_is_enforced_with_api_auth_off(ffmpeg: str, tmp_path) -> None:
    async with webrtc_server(tmp_path, ffmpeg) as srv:  # api.auth.enable is off
        api = Api(srv.url)
        await api.post("/api/v3/process", webrtc_process("cam", webrtc={
            "enabled": True, "token": "viewer-secret"}))
        await api.post("/api/v3/process", webrtc_process("open"))
        await wait_live(api, "cam")
        await wait_live(api, "open")
        offer = ViewerPool(probes=0).new_viewer().make_offer()
        anonymous = Api(srv.url)

        assert (await whep_offer(anonymous, "cam", offer)).status_code == 401
        assert (await whep_offer(Api(srv.url, "wrong"), "cam", offer)).status_code == 401
        resp = await anonymous.request("POST", "/api/v3/process/cam/whep?token=wrong",
                                       content=offer, headers={"Content-Type": "application/sdp"})
        assert resp.status_code == 401
        assert not session_ids(srv, "cam")  # nothing was allocated for a refused POST
        # a process without a token stays open when API auth is off
        assert (await whep_offer(anonymous, "open", offer)).status_code == 201

        # ?token= → the Location carries it, so a player's PATCH/DELETE of it just work
        resp = await anonymous.request("POST", "/api/v3/process/cam/whep?token=viewer-secret",
                                       content=offer, headers={"Content-Type": "application/sdp"})
        assert resp.status_code == 201, resp.text
        location = resp.headers["Location"]
        parts = urlsplit(location)
        assert parse_qs(parts.query) == {"token": ["viewer-secret"]}
        peer_id = parts.path.rsplit("/", 1)[1]
        assert peer_id in session_ids(srv, "cam")
        resp = await anonymous.request("PATCH", location, content=FRAG,
                                       headers={"Content-Type": "application/trickle-ice-sdpfrag"})
        assert resp.status_code == 204
        assert (await anonymous.delete(location)).status_code == 204
        assert peer_id not in session_ids(srv, "cam")

        # Bearer works as well, and its session URL also carries the credential
        resp = await whep_offer(Api(srv.url, "viewer-secret"), "cam", offer)
        assert resp.status_code == 201
        assert parse_qs(urlsplit(resp.headers["Location"]).query) == {"token": ["viewer-secret"]}


async def test_session_url_needs_no_api_credentials(ffmpeg: str, tmp_path) -> None:
    async with webrtc_server(tmp_path, ffmpeg, **{
        "api.auth.enable": True, "api.auth.username": "admin", "api.auth.password": "pw",
    }) as srv:
        login = await Api(srv.url).post("/api/login", {"username": "admin", "password": "pw"})
        admin = Api(srv.url, login.json()["access_token"])
        await admin.post("/api/v3/process", webrtc_process("cam"))
        await wait_live(admin, "cam")
        offer = ViewerPool(probes=0).new_viewer().make_offer()
        anonymous = Api(srv.url)
        assert (await whep_offer(anonymous, "cam", offer)).status_code == 401
        resp = await whep_offer(admin, "cam", offer)
        assert resp.status_code == 201
        location = resp.headers["Location"]
        assert "token" not in location  # the admin's JWT never goes into a URL
        peer_id = location.rsplit("/", 1)[1]
        resp = await anonymous.request("PATCH", location, content=FRAG,
                                       headers={"Content-Type": "application/trickle-ice-sdpfrag"})
        assert resp.status_code == 204
        assert (await anonymous.delete(location)).status_code == 204
        with trio.fail_after(5):
            while peer_id in session_ids(srv, "cam"):
                await trio.sleep(0.05)
        # the API itself stays closed
        assert (await anonymous.get("/api/v3/process")).status_code == 401
