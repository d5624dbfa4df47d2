"""The ICE servers a WHEP client is told about: ``Link: <url>; rel="ice-server"`` headers.

``webrtc.ice_servers`` (validated by the settings) lists STUN/TURN servers, each either with
fixed credentials (``{urls, username, credential}``) or with a shared secret for TURN REST
credentials (``{urls, secret, ttl, user}``) as coturn's ``use-auth-secret`` /
``static-auth-secret`` expects them: username ``"<expiry unix time>:<user>"``, credential
``base64(HMAC-SHA1(secret, username))``, valid until the expiry (``ttl`` seconds, default one
day, from when the header is made). WHEP (draft-ietf-wish-whep, like RFC 9725 §4.6 for
WHIP) sends one ``Link`` per URL on the ``201`` of the POST and may send them on ``OPTIONS``:
``<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="…";
credential="…"; credential-type="password"``. Browsers' WHEP clients (the player page,
medooze ``whip-whep``) read them into ``RTCPeerConnection``'s ``iceServers``.

Pure functions; the clock is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["DEFAULT_TTL", "link_headers", "turn_rest_credentials"]

#: Lifetime of TURN REST credentials when the server entry gives no ``ttl`` (seconds).
DEFAULT_TTL = 86400
DEFAULT_USER = "trio-core"


def turn_rest_credentials(secret: str, now: float, ttl: int = DEFAULT_TTL,
                          user: str = DEFAULT_USER) -> tuple[str, str]:
    """(username, credential) for coturn's ``use-auth-secret``: ``"<expiry>:<user>"`` and
    ``base64(HMAC-SHA1(secret, username))``."""
    username = f"{int(now) + ttl}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def link_headers(servers: Sequence[Mapping[str, Any]], now: float) -> list[str]:
    """One ``Link`` header value per URL of every server (see the module docstring)."""
    out = []
    for server in servers:
        username = server.get("username")
        credential = server.get("credential")
        if server.get("secret"):
            username, credential = turn_rest_credentials(
                server["secret"], now, int(server.get("ttl") or DEFAULT_TTL),
                str(server.get("user") or DEFAULT_USER))
        for url in server["urls"]:
            value = f'<{url}>; rel="ice-server"'
            if username is not None and credential is not None:
                value += (f"; username={_quote(username)}; credential={_quote(credential)}"
                          '; credential-type="password"')
            out.append(value)
    return out
