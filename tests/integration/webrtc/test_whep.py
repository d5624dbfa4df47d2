"""WHEP through the HTTP API: real server, real FFmpeg, real WebRTC viewers.

aiortc (an independent implementation, in a subprocess) decodes frames; the lightweight
viewers of ``bench/viewer.py`` stand in where many viewers are needed.
"""

from __future__ import annotations

import socket

import pytest
import trio

from bench.viewer import ViewerPool
from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api
from tests.helpers.leaks import child_pids
from tests.helpers.whep import wait_live, webrtc_process, webrtc_server, whep_offer
from trio_core.webrtc.ice_http import MAX_OFFER_BYTES
from trio_core.webrtc.subsystem import WebRTCSubsystem
from trio_core.webrtc.whep import RETRY_AFTER

VIDEO_ONLY_VP8_OFFER_PCMU = """v=0\r
o=- 1 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0 1\r
m=video 9 UDP/TLS/RTP/SAVPF 100\r
c=IN IP4 0.0.0.0\r
a=mid:0\r
a=recvonly\r
a=rtcp-mux\r
a=ice-ufrag:abcd\r
a=ice-pwd:abcdefghijklmnopqrstuvwx\r
a=fingerprint:sha-256 {fp}\r
a=setup:actpass\r
a=rtpmap:100 VP9/90000\r
m=audio 9 UDP/TLS/RTP/SAVPF 0\r
c=IN IP4 0.0.0.0\r
a=mid:1\r
a=recvonly\r
a=rtcp-mux\r
a=ice-ufrag:abcd\r
a=ice-pwd:abcdefghijklmnopqrstuvwx\r
a=fingerprint:sha-256 {fp}\r
a=setup:actpass\r
a=rtpmap:0 PCMU/8000\r
""".format(fp=":".join(["AB"] * 32))


@pytest.mark.slow
async def test_aiortc_plays_a_process_over_whep(ffmpeg: str, tmp_path) -> None:
    async with webrtc_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        assert (await api.post("/api/v3/process", webrtc_process("cam"))).status_code == 200
        await wait_live(api, "cam")
        result = await run_aiortc_viewer(
            ["--whep", f"{srv.url}/api/v3/process/cam/whep", "--duration", "4"], timeout=60
        )
        assert result["error"] is None, result
        assert result["connected"]
        assert result["video_frames"] >= 40, result  # 25 fps for 4 s, decoded by aiortc
        assert (result["width"], result["height"]) == (320, 240)
        assert result["audio_samples"] >= 48000, result  # > 1 s of decoded Opus
        assert result["delete_status"] == 204
        state = (await api.get("/api/v3/process/cam/state")).json()
        assert state["webrtc"]["viewers"] == []


async def test_state_lists_viewers_and_delete_kicks_one(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery, webrtc_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        await api.post("/api/v3/process", webrtc_process("cam"))
        await wait_live(api, "cam")
        pool = ViewerPool(probes=0)
        await nursery.start(pool.run)
        locations = []
        viewers = []
        for _ in range(2):
            v = pool.new_viewer()
            resp = await whep_offer(api, "cam", v.make_offer())
            assert resp.status_code == 201, resp.text
            assert resp.headers["content-type"].startswith("application/sdp")
            assert resp.headers["ETag"]
            v.accept_answer(resp.text)
            assert await pool.establish(v)
            locations.append(resp.headers["Location"])
            viewers.append(v)
        await trio.sleep(1.5)
        state = (await api.get("/api/v3/process/cam/state")).json()
        listed = {p["id"]: p for p in state["webrtc"]["viewers"]}
        assert {loc.rsplit("/", 1)[1] for loc in locations} == set(listed)
        for peer in listed.values():
            assert peer["state"] == "connected"
            assert peer["packets_sent"] > 10 and peer["bytes_sent"] > 1000
            assert peer["remote_address"].startswith("127.0.0.1:")
            assert peer["consent_age_seconds"] is not None
            assert {"nacks", "plis", "since"} <= set(peer)

        assert (await api.delete(locations[0])).status_code == 204
        assert (await api.delete(locations[0])).status_code == 204  # idempotent
        state = (await api.get("/api/v3/process/cam/state")).json()
        assert [p["id"] for p in state["webrtc"]["viewers"]] == [locations[1].rsplit("/", 1)[1]]
        kept = viewers[1].tracks
        before = sum(t.received for t in kept.values())
        await trio.sleep(0.5)
        assert sum(t.received for t in kept.values()) > before
        nursery.cancel_scope.cancel()


async def test_stopping_a_process_with_10_viewers_frees_everything(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery, webrtc_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        await api.post("/api/v3/process", webrtc_process("cam"))
        await wait_live(api, "cam")
        subsystem = srv.subsystem(WebRTCSubsystem)
        pool = ViewerPool(probes=0)
        await nursery.start(pool.run)
        for _ in range(10):
            v = pool.new_viewer()
            resp = await whep_offer(api, "cam", v.make_offer())
            v.accept_answer(resp.text)
            assert await pool.establish(v)
        source = subsystem.forwarder.sources["cam"]
        peers = list(source.peers.values())
        assert len(peers) == 10 and all(p.live for p in peers)
        ports = dict(source.ports)
        assert len(ports) == 2

        resp = await api.put("/api/v3/process/cam/command", {"command": "stop"})
        assert resp.status_code == 200
        with trio.fail_after(10):
            while (await api.get("/api/v3/process/cam/state")).json()["exec"] != "finished":
                await trio.sleep(0.1)
        assert all(p.closed for p in peers)
        assert "cam" not in subsystem.forwarder.sources
        assert subsystem.forwarder.mux.peer_count == 0
        assert not child_pids()  # FFmpeg gone
        for port in ports.values():  # the Source's sockets are closed: the ports are free
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", port))
        resp = await whep_offer(api, "cam", pool.new_viewer().make_offer())
        assert resp.status_code == 409
        nursery.cancel_scope.cancel()


async def test_whep_error_statuses(ffmpeg: str, tmp_path) -> None:
    async with webrtc_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        await api.post("/api/v3/process", webrtc_process("cam"))
        plain = webrtc_process("plain", webrtc={"enabled": False})
        await api.post("/api/v3/process", plain)
        stopped = webrtc_process("stopped", autostart=False)
        await api.post("/api/v3/process", stopped)
        await wait_live(api, "cam")
        pool = ViewerPool(probes=0)
        offer = pool.new_viewer().make_offer()

        resp = await whep_offer(api, "nope", offer)
        assert resp.status_code == 404 and resp.json()["code"] == 404
        resp = await whep_offer(api, "plain", offer)
        assert resp.status_code == 404 and "not enabled" in resp.json()["message"]
        resp = await whep_offer(api, "stopped", offer)
        assert resp.status_code == 409 and resp.headers["Retry-After"] == RETRY_AFTER
        resp = await api.request("POST", "/api/v3/process/cam/whep", content=offer,
                                 headers={"Content-Type": "application/json"})
        assert resp.status_code == 415
        resp = await whep_offer(api, "cam", "v=0\r\nm=video 9 RTP/AVP 96\r\n")
        assert resp.status_code == 400
        assert resp.json()["details"][0]  # the reason
        resp = await whep_offer(api, "cam", offer.replace("a=ice-ufrag", "a=x-ice-ufrag"))
        assert resp.status_code == 400 and "ice-ufrag" in " ".join(resp.json()["details"])
        resp = await whep_offer(api, "cam", VIDEO_ONLY_VP8_OFFER_PCMU)
        assert resp.status_code == 406, resp.text
        assert "H264" in " ".join(resp.json()["details"])
        padded = offer + "a=x-pad:" + "x" * (MAX_OFFER_BYTES - len(offer)) + "\r\n"
        resp = await whep_offer(api, "cam", padded)
        assert resp.status_code == 413 and resp.json()["details"] == [
            f"more than {MAX_OFFER_BYTES} bytes"]

        resp = await api.request("OPTIONS", "/api/v3/process/cam/whep",
                                 headers={"Origin": "http://player.example",
                                          "Access-Control-Request-Method": "POST"})
        assert resp.status_code == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Location" in resp.headers["Access-Control-Expose-Headers"]
        assert resp.headers["Accept-Post"] == "application/sdp"

        good = await whep_offer(api, "cam", offer)
        assert good.status_code == 201
        loc = good.headers["Location"]
        frag = "a=ice-ufrag:{}\r\na=ice-pwd:x\r\n"
        resp = await api.request("PATCH", loc, content=frag.format("zzzz"),
                                 headers={"Content-Type": "application/trickle-ice-sdpfrag"})
        assert resp.status_code == 400  # an ICE restart whose pwd is too short: named
        assert "ice-pwd" in " ".join(resp.json()["details"])
        resp = await api.request("PATCH", loc, content="a=candidate:1 1 udp 1 127.0.0.1 9 typ host",
                                 headers={"Content-Type": "text/plain"})
        assert resp.status_code == 415
        resp = await api.request("PATCH", loc + "x", content="",
                                 headers={"Content-Type": "application/trickle-ice-sdpfrag"})
        assert resp.status_code == 404
        assert (await api.delete(loc)).status_code == 204
        assert (await api.delete("/api/v3/process/nope/whep/abc")).status_code == 404


async def test_whep_follows_api_auth_and_the_process_token(ffmpeg: str, tmp_path) -> None:
    async with webrtc_server(tmp_path, ffmpeg, **{
        "api.auth.enable": True, "api.auth.username": "admin", "api.auth.password": "pw",
    }) as srv:
        login = await Api(srv.url).post("/api/login", {"username": "admin", "password": "pw"})
        admin = Api(srv.url, login.json()["access_token"])
        await admin.post("/api/v3/process", webrtc_process("cam", webrtc={
            "enabled": True, "token": "viewer-secret"}))
        await wait_live(admin, "cam")
        offer = ViewerPool(probes=0).new_viewer().make_offer()
        anonymous = Api(srv.url)
        assert (await whep_offer(anonymous, "cam", offer)).status_code == 401
        assert (await whep_offer(Api(srv.url, "wrong"), "cam", offer)).status_code == 401
        resp = await whep_offer(Api(srv.url, "viewer-secret"), "cam", offer)
        assert resp.status_code == 201
        resp = await anonymous.request(
            "POST", "/api/v3/process/cam/whep?token=viewer-secret", content=offer,
            headers={"Content-Type": "application/sdp"})
        assert resp.status_code == 201
        assert (await whep_offer(admin, "cam", offer)).status_code == 201
        # the viewer token opens WHEP only, not the API
        assert (await Api(srv.url, "viewer-secret").get("/api/v3/process")).status_code == 401


@pytest.mark.slow
async def test_a_reconnecting_process_keeps_its_viewers(ffmpeg: str, tmp_path) -> None:
    """FFmpeg ends every 3 s (``-t 3``) and is restarted by ``reconnect``; the viewer's
    session, SSRC and sequence numbers go on as if nothing happened."""
    async with trio.open_nursery() as nursery, webrtc_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        cfg = webrtc_process("cam", reconnect=True, reconnect_delay_seconds=0)
        cfg["input"][0]["options"] = ["-re", "-t", "3", "-f", "lavfi"]
        cfg["input"][1]["options"] = ["-re", "-t", "3", "-f", "lavfi"]
        await api.post("/api/v3/process", cfg)
        await wait_live(api, "cam")
        process = srv.supervisor.get("cam")
        runs_before = process.runs
        pool = ViewerPool(probes=0)
        await nursery.start(pool.run)
        v = pool.new_viewer()
        resp = await whep_offer(api, "cam", v.make_offer())
        v.accept_answer(resp.text)
        assert await pool.establish(v)
        with trio.fail_after(15):
            while process.runs < runs_before + 1:
                await trio.sleep(0.1)
        await trio.sleep(2.0)  # well into the next FFmpeg run
        [video] = [t for t in v.tracks.values() if t.kind == "video"]
        received = video.received
        await trio.sleep(1.0)
        assert video.received > received + 10  # still receiving from the new FFmpeg
        assert len(v.tracks) == 2  # same two SSRCs: nothing renegotiated
        assert video.gaps == 0  # sequence numbers continuous across the restart
        subsystem = srv.subsystem(WebRTCSubsystem)
        source = subsystem.forwarder.sources["cam"]
        assert source.state["video"].restarts >= 1
        assert all(p.live for p in source.peers.values()) and len(source.peers) == 1
        nursery.cancel_scope.cancel()


async def test_stopping_one_process_leaves_the_other_processes_viewers_alone(
        ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery, webrtc_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        for pid in ("one", "two"):
            await api.post("/api/v3/process", webrtc_process(pid))
        for pid in ("one", "two"):
            await wait_live(api, pid)
        pool = ViewerPool(probes=0)
        await nursery.start(pool.run)
        viewers = {}
        for pid in ("one", "two"):
            v = pool.new_viewer()
            resp = await whep_offer(api, pid, v.make_offer())
            assert resp.status_code == 201
            v.accept_answer(resp.text)
            assert await pool.establish(v)
            viewers[pid] = v
        await trio.sleep(1.0)
        assert (await api.put("/api/v3/process/one/command", {"command": "stop"})).status_code == 200
        kept = viewers["two"]
        before = sum(t.received for t in kept.tracks.values())
        await trio.sleep(1.5)
        assert sum(t.received for t in kept.tracks.values()) > before + 20
        state = (await api.get("/api/v3/process/two/state")).json()
        assert len(state["webrtc"]["viewers"]) == 1
        assert (await api.get("/api/v3/process/one/state")).json().get("webrtc") is None
        nursery.cancel_scope.cancel()


async def test_answer_announces_public_and_nat_ips_on_the_configured_port(
        ffmpeg: str, tmp_path) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    udp.close()  # a port that was free a moment ago
    async with webrtc_server(tmp_path, ffmpeg, **{
        "webrtc.public_ip": "127.0.0.1", "webrtc.nat_1_to_1_ips": ["198.51.100.7"],
        "webrtc.udp_mux_port": port,
    }) as srv:
        api = Api(srv.url)
        await api.post("/api/v3/process", webrtc_process("cam"))
        await wait_live(api, "cam")
        offer = ViewerPool(probes=0).new_viewer().make_offer()
        resp = await whep_offer(api, "cam", offer)
        assert resp.status_code == 201
        candidates = [line for line in resp.text.splitlines() if line.startswith("a=candidate")]
        hosts = {(c.split()[4], int(c.split()[5])) for c in candidates}
        assert hosts == {("127.0.0.1", port), ("198.51.100.7", port)}
        assert "a=ice-lite" in resp.text.split("m=")[0]  # session level


