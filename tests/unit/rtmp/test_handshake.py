"""rtmp.handshake: both roles byte by byte, version checks, the digest handshake."""

from __future__ import annotations

import pytest

from rtmp.errors import RtmpError
from rtmp.handshake import HANDSHAKE_SIZE, ClientHandshake, ServerHandshake


def test_handshake_both_roles_byte_by_byte() -> None:
    server, client = ServerHandshake(), ClientHandshake()
    c0c1 = client.start()
    assert len(c0c1) == 1 + HANDSHAKE_SIZE and c0c1[0] == 3
    s012 = b"".join(server.receive_data(c0c1[i:i + 1]) for i in range(len(c0c1)))
    assert len(s012) == 1 + 2 * HANDSHAKE_SIZE
    assert s012[1 + HANDSHAKE_SIZE:] == c0c1[1:]  # S2 echoes C1
    assert s012[5:9] == b"\x00\x00\x00\x00"  # zero version: no digest handshake asked for
    c2 = client.receive_data(s012 + b"extra")
    assert client.done and client.leftover == b"extra"
    assert c2 == s012[1:1 + HANDSHAKE_SIZE]
    assert server.receive_data(c2 + b"\x02more") == b""
    assert server.done and server.leftover == b"\x02more"
    with pytest.raises(RtmpError):
        server.receive_data(b"x")


@pytest.mark.parametrize("first", [b"\x06", b"\x00", b"GET / HTTP/1.1\r\n"])
def test_handshake_rejects_other_versions(first: bytes) -> None:
    with pytest.raises(RtmpError) as info:
        ServerHandshake().receive_data(first)
    assert info.value.reason == "handshake-version"




def test_digest_handshake_only_for_a_valid_client_digest() -> None:
    import hashlib
    import hmac

    from rtmp.handshake import CLIENT_PARTIAL_KEY, SERVER_KEY, SERVER_PARTIAL_KEY, find_digest

    c1 = bytearray(bytes(4) + b"\x09\x00\x7c\x02" + bytes(range(256)) * 6)[:HANDSHAKE_SIZE]
    plain = ServerHandshake()
    plain.receive_data(b"\x03" + bytes(c1))  # a version but no valid digest: simple answer
    assert not plain.complex
    pos = sum(c1[8:12]) % 728 + 12  # the digest position of scheme "base 8"
    c1[pos:pos + 32] = hmac.new(CLIENT_PARTIAL_KEY, bytes(c1[:pos] + c1[pos + 32:]), hashlib.sha256).digest()
    server = ServerHandshake()
    reply = server.receive_data(b"\x03" + bytes(c1))
    assert server.complex
    s1, s2 = reply[1:1 + HANDSHAKE_SIZE], reply[1 + HANDSHAKE_SIZE:]
    assert s1[4:8] != bytes(4) and find_digest(s1, SERVER_PARTIAL_KEY) is not None
    key = hmac.new(SERVER_KEY, bytes(c1[pos:pos + 32]), hashlib.sha256).digest()
    assert s2[-32:] == hmac.new(key, s2[:-32], hashlib.sha256).digest()
