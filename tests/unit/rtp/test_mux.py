"""rtp.mux: the one UDP socket of every viewer routes by first byte (RFC 7983) and counts what
it cannot route — here over a real socket on 127.0.0.1, with no viewer registered."""

from __future__ import annotations

import socket

import trio

from rtp.mux import UdpMux
from rtp.stun import build_binding_request


async def test_unroutable_datagrams_are_dropped_and_counted_by_reason() -> None:
    mux = UdpMux("127.0.0.1", 0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(mux.run)
        assert port > 0 and mux.addresses == [("127.0.0.1", port)]
        assert mux.peer_count == 0
        datagrams = [
            b"\x16\xfe\xfd" + b"\x00" * 20,  # DTLS from an address no STUN check came from
            b"\x80\xc8" + b"\x00" * 20,  # SRTCP likewise
            b"\x50hello",  # no protocol starts with 0x50
            build_binding_request("viewer", "nobody", "password-0123456789abcd",
                                  transaction_id=b"T" * 12),  # a ufrag nobody registered
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for data in datagrams:
                sender.sendto(data, ("127.0.0.1", port))
            with trio.fail_after(5):
                while mux.received < len(datagrams):
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert mux.dropped == {"dtls-unknown-address": 1, "srtp-unknown-address": 1,
                           "unknown-first-byte": 1, "stun-unknown-ufrag": 1}
    assert mux.sockets == []  # the sockets end with run
    mux.dispatch(b"", ("127.0.0.1", 9), 0.0)
    assert mux.dropped["empty"] == 1
