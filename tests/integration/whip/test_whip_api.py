"""The WHIP endpoints' contract with hand-written offers: tokens, one publisher per name,
unusable offers, CORS, pending publishers timing out, WHEP of an unknown channel."""

from __future__ import annotations

import trio

from tests.helpers.api import Api
from tests.helpers.whip import whip_offer, whip_server
from trio_core.whip.subsystem import WhipSubsystem

FP = ":".join(["AB"] * 32)


def offer(video: str = "a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;"
          "profile-level-id=42e01f\r\n", audio: str = "a=rtpmap:111 opus/48000/2\r\n",
          setup: str = "actpass", direction: str = "sendonly") -> str:
    def section(kind: str, mid: str, rtpmap: str) -> str:
        pts = " ".join(line.split()[0].split(":")[1] for line in rtpmap.splitlines()
                       if line.startswith("a=rtpmap:"))
        return (f"m={kind} 9 UDP/TLS/RTP/SAVPF {pts}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\n"
                f"a={direction}\r\na=rtcp-mux\r\na=ice-ufrag:abcd\r\n"
                f"a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 {FP}\r\n"
                f"a=setup:{setup}\r\n{rtpmap}")
    return ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
            + section("video", "0", video) + section("audio", "1", audio))


async def test_whip_contract(ffmpeg: str, tmp_path) -> None:
    async with whip_server(tmp_path, ffmpeg, **{"whip.token": "tok",
                                                "webrtc.pending_timeout": 1}) as srv:
        api = Api(srv.url)
        resp = await api.request("OPTIONS", "/whip/cam")
        assert resp.status_code == 204
        assert resp.headers["Accept-Post"] == "application/sdp"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Location" in resp.headers["Access-Control-Expose-Headers"]

        # tokens: missing, wrong -> 401 (Core-style JSON); Bearer or ?token= -> 201
        resp = await whip_offer(api, "cam", offer())
        assert resp.status_code == 401 and resp.json()["code"] == 401
        resp = await whip_offer(api, "cam", offer(), Authorization="Bearer nope")
        assert resp.status_code == 401
        resp = await api.request("POST", "/whip/cam?token=tok", content=offer(),
                                 headers={"Content-Type": "application/sdp"})
        assert resp.status_code == 201, resp.text
        location = resp.headers["Location"]
        assert location.startswith("/whip/cam/") and location.endswith("?token=tok")
        assert resp.headers["Content-Type"] == "application/sdp"
        assert resp.headers["ETag"]
        answer = resp.text
        assert "a=ice-lite" in answer and "a=setup:passive" in answer
        assert "a=recvonly" in answer and "a=rtpmap:102 H264/90000" in answer
        assert "a=rtcp-fb:102 goog-remb" in answer and "a=rtcp-fb:102 nack pli" in answer
        assert "a=rtpmap:111 opus/48000/2" in answer

        # one publisher per name: a second one gets 409 while the first lives
        resp = await whip_offer(api, "cam", offer(), Authorization="Bearer tok")
        assert resp.status_code == 409, resp.text
        assert resp.json()["message"] == "Channel is being published"
        listed = (await api.get("/api/v3/whip")).json()
        assert [(e["name"], e["state"]) for e in listed] == [("cam", "connecting")]

        # DELETE frees the name at once
        assert (await api.request("DELETE", location)).status_code == 204
        resp = await whip_offer(api, "cam", offer(setup="passive"), Authorization="Bearer tok")
        assert resp.status_code == 201, resp.text
        assert "a=setup:active" in resp.text  # the publisher is the DTLS server: we connect

        # a publisher that never connects is dropped after webrtc.pending_timeout; name freed
        with trio.fail_after(5):
            while (await api.get("/api/v3/whip")).json()[0]["publishing"]:
                await trio.sleep(0.1)
        resp = await whip_offer(api, "cam", offer(), Authorization="Bearer tok")
        assert resp.status_code == 201


SERVERS = [{"urls": ["turn:10.9.0.1:3478?transport=udp"], "secret": "coturn-secret",
            "ttl": 600}, {"urls": "stun:stun.example.net:3478"}]


async def test_links_ice_tcp_candidates_and_patch(ffmpeg: str, tmp_path) -> None:
    """``webrtc.ice_servers`` on the WHIP 201 and OPTIONS (with the token; a preflight
    without it gets no TURN credentials), and on the channel's WHEP OPTIONS; with
    ``webrtc.tcp_address`` the WHIP answer carries the ``tcptype passive`` candidate; the
    PATCH contract (trickle, ICE restart, If-Match, malformed)."""
    async with whip_server(tmp_path, ffmpeg, **{"whip.token": "tok",
                                                "webrtc.ice_servers": SERVERS,
                                                "webrtc.tcp_address": "127.0.0.1:0"}) as srv:
        api = Api(srv.url)
        resp = await whip_offer(api, "cam", offer(), Authorization="Bearer tok")
        assert resp.status_code == 201, resp.text
        links = resp.headers.get_list("Link")
        assert len(links) == 2, links
        assert links[0].startswith('<turn:10.9.0.1:3478?transport=udp>; rel="ice-server"; '
                                   'username="')
        assert 'credential-type="password"' in links[0]
        assert links[1] == '<stun:stun.example.net:3478>; rel="ice-server"'
        assert "Link" in resp.headers["Access-Control-Expose-Headers"]
        cands = [x for x in resp.text.splitlines() if x.startswith("a=candidate:")]
        assert [c.split()[2] for c in cands] == ["udp", "tcp"] * 2, cands  # per section
        assert cands[1].endswith("typ host tcptype passive")
        assert int(cands[1].split()[3]) < int(cands[0].split()[3])  # below UDP
        options = await api.request("OPTIONS", "/whip/cam", headers={"Authorization":
                                                                     "Bearer tok"})
        assert options.status_code == 204 and len(options.headers.get_list("Link")) == 2
        preflight = await api.request("OPTIONS", "/whip/cam")
        assert preflight.status_code == 204 and not preflight.headers.get_list("Link")
        whep = await api.request("OPTIONS", "/whep/cam")
        assert len(whep.headers.get_list("Link")) == 2  # viewers: no play token set
        # PATCH: trickle ignored (ICE-lite); If-Match mismatch 412; malformed 400; an ICE
        # restart 200 with the new ufrag/pwd and a new ETag (the WHEP contract, same code)
        session, tag = resp.headers["Location"], resp.headers["ETag"]
        frag = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=candidate:1 1 udp 1 " \
               "127.0.0.1 9 typ host\r\n"
        ctype = {"Content-Type": "application/trickle-ice-sdpfrag"}
        assert (await api.request("PATCH", session, content=frag, headers=ctype)
                ).status_code == 204
        restart = frag.replace("abcd", "wxyz")
        got = await api.request("PATCH", session, content=restart,
                                headers={**ctype, "If-Match": '"stale"'})
        assert got.status_code == 412 and tag in got.json()["details"][0]
        got = await api.request("PATCH", session, content="a=ice-ufrag:wxyz\r\n", headers=ctype)
        assert got.status_code == 400 and "needs the new a=ice-pwd" in got.text
        got = await api.request("PATCH", session, content="a=ice-ufrag:x\r\n", headers=ctype)
        assert got.status_code == 400 and "a=ice-ufrag must be 4..256" in got.text
        got = await api.request("PATCH", session, content=frag, headers={"Content-Type": "x/y"})
        assert got.status_code == 415
        got = await api.request("PATCH", session, content=restart,
                                headers={**ctype, "If-Match": tag})
        assert got.status_code == 200, got.text
        assert got.headers["Content-Type"].startswith("application/trickle-ice-sdpfrag")
        lines = got.text.splitlines()
        assert lines[0] == "a=ice-lite" and "a=group:BUNDLE 0 1" in lines
        ufrag = next(x[12:] for x in lines if x.startswith("a=ice-ufrag:"))
        assert any(x.startswith("a=ice-pwd:") for x in lines)
        assert got.headers["ETag"] == f'"{ufrag}"' != tag
        assert any(x.endswith("tcptype passive") for x in lines)  # ICE-TCP too
        # the old ETag is stale now; the new one (or *) is what If-Match must carry
        got = await api.request("PATCH", session, content=frag.replace("abcd", "wxyz2"),
                                headers={**ctype, "If-Match": tag})
        assert got.status_code == 412
        # trickle with the new remote ufrag: 204
        assert (await api.request("PATCH", session, content=restart, headers=ctype)
                ).status_code == 204
        got = await api.request("PATCH", "/whip/cam/nosuch", content=restart, headers=ctype)
        assert got.status_code == 404


async def test_unusable_offers_are_400_naming_what_is_missing(ffmpeg: str, tmp_path) -> None:
    async with whip_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        resp = await whip_offer(api, "cam", offer(video="a=rtpmap:98 VP9/90000\r\n"))
        assert resp.status_code == 400
        detail = resp.json()["details"][0]
        assert "no usable video codec" in detail and "VP9/90000" in detail, detail
        assert "H264 (packetization-mode=1) or VP8" in detail
        resp = await whip_offer(api, "cam", offer(audio="a=rtpmap:0 PCMU/8000\r\n"))
        assert resp.status_code == 400
        assert "no usable audio codec: offered PCMU/8000" in resp.json()["details"][0]
        resp = await whip_offer(api, "cam", offer(
            video="a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=0\r\n"))
        assert resp.status_code == 400
        assert "packetization-mode=0" in resp.json()["details"][0]
        resp = await whip_offer(api, "cam", offer(direction="recvonly"))
        assert resp.status_code == 400
        assert "sends no audio or video" in resp.json()["details"][0]
        resp = await whip_offer(api, "cam", "hello")
        assert resp.status_code == 400 and "v=0" in resp.json()["details"][0]
        resp = await api.request("POST", "/whip/cam", content=offer(),
                                 headers={"Content-Type": "text/plain"})
        assert resp.status_code == 415
        resp = await whip_offer(api, "bad%20name", offer())
        assert resp.status_code == 400 and resp.json()["message"] == "Invalid channel name"
        # VP8 alone is accepted
        resp = await whip_offer(api, "vp8", offer(video="a=rtpmap:96 VP8/90000\r\n"))
        assert resp.status_code == 201, resp.text
        # nothing published: WHEP answers 409 + Retry-After
        resp = await api.request("POST", "/whep/nothing", content=offer(direction="recvonly"),
                                 headers={"Content-Type": "application/sdp"})
        assert resp.status_code == 409 and resp.headers["Retry-After"]


async def test_whip_needs_webrtc(ffmpeg: str, tmp_path) -> None:
    from trio_core.config.startup_error import StartupError

    try:
        async with whip_server(tmp_path, ffmpeg, **{"webrtc.enable": False}):
            raise AssertionError("the server started")
    except* StartupError as group:
        assert "whip.enable needs webrtc.enable" in str(group.exceptions[0])


async def test_publisher_limits_are_503_with_retry_after(ffmpeg: str, tmp_path) -> None:
    async with whip_server(tmp_path, ffmpeg, **{"whip.max_pending": 1,
                                                "whip.max_publishers": 2}) as srv:
        api = Api(srv.url)
        assert (await whip_offer(api, "a", offer())).status_code == 201  # pending (no ICE)
        resp = await whip_offer(api, "b", offer())
        assert resp.status_code == 503 and resp.headers["Retry-After"], resp.text
        assert "whip.max_pending" in resp.json()["details"][0]
        channels = srv.subsystem(WhipSubsystem).channels
        assert channels is not None
        channels.max_pending = 0  # only the publisher limit now
        assert (await whip_offer(api, "b", offer())).status_code == 201
        resp = await whip_offer(api, "c", offer())
        assert resp.status_code == 503 and "whip.max_publishers" in resp.json()["details"][0]

