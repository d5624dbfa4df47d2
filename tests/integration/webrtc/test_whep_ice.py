"""WHEP and ICE (issue 21) through the HTTP API: ICE servers in Link headers (TURN REST
credentials), ICE restart over PATCH with ETag/If-Match, ICE-TCP candidates, /metrics."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from bench.ice_tcp import MiniViewer
from tests.helpers.api import Api
from tests.helpers.whep import wait_live, webrtc_process, webrtc_server, whep_offer

SERVERS = [{"urls": ["turn:10.9.0.1:3478?transport=udp", "turn:10.9.0.1:3478?transport=tcp"],
            "secret": "coturn-shared-secret", "ttl": 600},
           {"urls": "stun:stun.example.net:3478"}]
FRAG = "application/trickle-ice-sdpfrag"


async def test_links_restart_and_tcp_candidates(ffmpeg: str, tmp_path) -> None:
    async with webrtc_server(tmp_path, ffmpeg, **{"webrtc.ice_servers": SERVERS,
                                                  "webrtc.tcp_address": "127.0.0.1:0",
                                                  "metrics.enable": True,
                                                  "metrics.enable_prometheus": True}) as srv:
        api = Api(srv.url)
        assert (await api.post("/api/v3/process", webrtc_process("cam"))).status_code == 200
        await wait_live(api, "cam")
        viewer = MiniViewer("tcp")
        resp = await whep_offer(api, "cam", viewer.offer())
        assert resp.status_code == 201, resp.text
        links = resp.headers.get_list("Link")
        assert len(links) == 3, links
        turn = links[0]
        assert turn.startswith('<turn:10.9.0.1:3478?transport=udp>; rel="ice-server"; ')
        params = dict(p.strip().split("=", 1) for p in turn.split(";")[2:])
        username = params["username"].strip('"')
        expiry, user = username.split(":")
        assert abs(int(expiry) - (time.time() + 600)) < 30 and user == "trio-core"
        expected = base64.b64encode(hmac.new(b"coturn-shared-secret", username.encode(),
                                             hashlib.sha1).digest()).decode()
        assert params["credential"] == f'"{expected}"'  # what coturn's use-auth-secret checks
        assert params["credential-type"] == '"password"'
        assert links[2] == '<stun:stun.example.net:3478>; rel="ice-server"'
        options = await api.request("OPTIONS", "/api/v3/process/cam/whep")
        assert len(options.headers.get_list("Link")) == 3
        # the answer offers ICE-TCP, below UDP
        assert "tcptype passive" in resp.text
        location, etag = resp.headers["Location"], resp.headers["ETag"]

        # trickle with the session's ufrag: 204; a stale If-Match: 412; restart: 200
        trickle = f"a=ice-ufrag:{viewer.ufrag}\r\na=ice-pwd:{viewer.pwd}\r\n" \
                  "m=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" \
                  "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
        got = await api.request("PATCH", location, content=trickle,
                                headers={"Content-Type": FRAG, "If-Match": etag})
        assert got.status_code == 204
        restart = "a=ice-ufrag:fresh01\r\na=ice-pwd:abcdefghijklmnopqrstuvwxyz\r\n"
        got = await api.request("PATCH", location, content=restart,
                                headers={"Content-Type": FRAG, "If-Match": '"stale"'})
        assert got.status_code == 412
        got = await api.request("PATCH", location, content="a=ice-ufrag:x\r\n",
                                headers={"Content-Type": FRAG})
        assert got.status_code == 400 and "ice-ufrag" in got.text
        got = await api.request("PATCH", location, content=restart,
                                headers={"Content-Type": FRAG, "If-Match": "*"})
        assert got.status_code == 200, got.text
        assert got.headers["Content-Type"].startswith(FRAG)
        assert got.headers["ETag"] != etag
        lines = got.text.splitlines()
        assert lines[0] == "a=ice-lite"
        new_ufrag = next(x[12:] for x in lines if x.startswith("a=ice-ufrag:"))
        assert f'"{new_ufrag}"' == got.headers["ETag"]
        assert any("tcptype passive" in x for x in lines)
        # the restarted session connects over ICE-TCP with the new credentials
        viewer.ufrag = "fresh01"
        viewer.accept(resp.text)
        viewer.r_ufrag = new_ufrag
        viewer.r_pwd = next(x[10:] for x in lines if x.startswith("a=ice-pwd:"))
        await viewer.establish()
        assert len(await viewer.receive_media(30)) == 30
        state = (await api.get("/api/v3/process/cam/state")).json()["webrtc"]
        [seen] = state["viewers"]
        assert seen["transport"] == "tcp" and seen["ice_restarts"] == 1
        metrics = (await api.get("/metrics")).text
        assert "webrtc_tcp_bound_connections_total 1.0" in metrics
        assert "webrtc_tcp_connections 1.0" in metrics
        assert (await api.delete(location)).status_code == 204


async def test_ice_servers_round_trip_through_the_config_api(ffmpeg: str, tmp_path) -> None:
    async with webrtc_server(tmp_path, ffmpeg, **{"webrtc.ice_servers": SERVERS}) as srv:
        api = Api(srv.url)
        cfg = (await api.get("/api/v3/config")).json()["config"]
        assert cfg["webrtc"]["ice_servers"][0]["secret"] == "coturn-shared-secret"
        assert cfg["webrtc"]["tcp_address"] == "" and cfg["webrtc"]["consent_timeout"] == 30
        cfg["webrtc"]["ice_servers"] = [{"urls": "stun:stun.example.net"}]
        assert (await api.put("/api/v3/config", cfg)).status_code == 200
        cfg["webrtc"]["ice_servers"] = [{"urls": "http://x"}]
        bad = await api.put("/api/v3/config", cfg)
        assert bad.status_code == 409 and "stun:/stuns:/turn:/turns:" in bad.text
