"""ICE servers for WHEP Link headers: TURN REST credentials (coturn use-auth-secret), the
header syntax, and the settings' validation of webrtc.ice_servers."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from trio_core.config.settings import _parse_ice_servers
from trio_core.webrtc.ice_servers import link_headers, turn_rest_credentials


def test_turn_rest_credentials_are_what_coturn_checks() -> None:
    username, credential = turn_rest_credentials("s3cret", now=1_700_000_000, ttl=3600,
                                                 user="alice")
    assert username == "1700003600:alice"
    # coturn: base64(HMAC-SHA1(static-auth-secret, username))
    digest = hmac.new(b"s3cret", b"1700003600:alice", hashlib.sha1).digest()
    assert credential == base64.b64encode(digest).decode()


def test_link_headers_one_per_url_with_quoted_credentials() -> None:
    servers = [{"urls": ["turn:t.example:3478?transport=udp", "turns:t.example:5349"],
                "username": "u", "credential": "p"},
               {"urls": ["stun:s.example"]},
               {"urls": ["turn:r.example"], "secret": "k", "ttl": 60}]
    links = link_headers(servers, now=1000)
    assert links[0] == ('<turn:t.example:3478?transport=udp>; rel="ice-server"; username="u"; '
                        'credential="p"; credential-type="password"')
    assert links[1].startswith("<turns:t.example:5349>")
    assert links[2] == '<stun:s.example>; rel="ice-server"'
    assert 'username="1060:trio-core"' in links[3]


@pytest.mark.parametrize("bad, reason", [
    ({"urls": "http://x"}, "stun:/stuns:/turn:/turns:"),
    ({"urls": "turn:x"}, "needs 'username'/'credential' or 'secret'"),
    ({"urls": "turn:x", "secret": "s", "username": "u"}, "not both"),
    ({"urls": "turn:x", "secret": "s", "ttl": 0}, "'ttl'"),
    ({"urls": "turn:x", "username": "u", "credential": 'a"b'}, "without quotes"),
    ({"urls": "turn:x>;rel=evil", "secret": "s"}, "stun:/stuns:/turn:/turns:"),
    ({"url": "stun:x"}, "unknown keys"),
    ("stun:x", "expected an object"),
])
def test_settings_refuse_bad_ice_servers(bad: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        _parse_ice_servers([bad])


def test_settings_take_json_text_from_the_environment() -> None:
    assert _parse_ice_servers('[{"urls": "stun:x"}]') == [{"urls": ["stun:x"]}]
    assert _parse_ice_servers("") == []
    with pytest.raises(ValueError, match="not JSON"):
        _parse_ice_servers("[{")
