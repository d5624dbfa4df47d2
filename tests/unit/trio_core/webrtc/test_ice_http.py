"""trio_core.webrtc.ice_http: the PATCH contract (trickle / ICE restart), ETag and Link
headers that the WHEP and WHIP routes share, over a minimal app and a fake session."""

from __future__ import annotations

from typing import Any

from rtp.stun import IceLite
from trio_core.http.errors import install_error_handlers
from trio_core.web import App, Response
from trio_core.webrtc.ice_http import SDPFRAG, etag, ice_patch, with_links


class Session:
    def __init__(self) -> None:
        self.ice = IceLite("srv1", "p" * 22, "cli1")
        self.restarts: list[str] = []

    def restart(self, remote_ufrag: str) -> str:
        self.restarts.append(remote_ufrag)
        self.ice = self.ice.restarted("srv2", "q" * 22, remote_ufrag)
        return "a=ice-lite\r\na=ice-ufrag:srv2\r\na=ice-pwd:" + "q" * 22 + "\r\n"


def app_with(session: Session) -> App:
    app = App(__name__)
    install_error_handlers(app)

    @app.route("/s", methods=["PATCH"])
    async def patch() -> Response:
        return await ice_patch(session, session.restart, {"X-Cors": "1"})

    return app


async def test_patch_contract() -> None:
    session = Session()
    client = app_with(session).test_client()

    async def send(body: str, ctype: str = SDPFRAG, **headers: str) -> Any:
        return await client.patch("/s", data=body.encode(),
                                  headers={"Content-Type": ctype, **headers})

    old = etag(session)
    assert old == '"srv1"'
    trickle = "a=ice-ufrag:cli1\r\na=ice-pwd:" + "x" * 22 + "\r\na=candidate:1 1 udp 1 " \
              "10.0.0.1 9 typ host\r\n"
    resp = await send(trickle)
    assert resp.status_code == 204 and resp.headers["X-Cors"] == "1"
    assert (await send(trickle, "text/plain")).status_code == 415
    restart = "a=ice-ufrag:cli2\r\na=ice-pwd:" + "y" * 22 + "\r\n"
    assert (await send(restart, **{"If-Match": '"x"'})).status_code == 412
    assert (await send("a=ice-ufrag:cli2\r\n")).status_code == 400
    assert (await send("garbage")).status_code == 400
    assert (await send("a=x\r\n" * 5000)).status_code == 413
    assert session.restarts == []
    resp = await send(restart, **{"If-Match": old})
    assert resp.status_code == 200 and session.restarts == ["cli2"]
    assert resp.headers["ETag"] == '"srv2"' == etag(session)
    assert resp.headers["Content-Type"].startswith(SDPFRAG)
    assert (await send(restart, **{"If-Match": old})).status_code == 412
    assert (await send(restart, **{"If-Match": "*"})).status_code == 204


def test_with_links_adds_one_link_per_url() -> None:
    servers = [{"urls": ["stun:a.example:3478", "turn:a.example:3478"], "username": "u",
                "credential": "c"}]
    headers = with_links({"ETag": '"e"'}, servers, lambda: 0.0)
    assert headers["ETag"] == '"e"'
    assert headers.getlist("Link") == [
        '<stun:a.example:3478>; rel="ice-server"; username="u"; credential="c"; '
        'credential-type="password"',
        '<turn:a.example:3478>; rel="ice-server"; username="u"; credential="c"; '
        'credential-type="password"']
    assert with_links({}, [], lambda: 0.0).getlist("Link") == []
