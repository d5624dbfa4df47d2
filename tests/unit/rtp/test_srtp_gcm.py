"""rtp/srtp_gcm.h and rtp.srtp_gcm: the C fan-out's AES-GCM SRTP (without libsrtp) protects
every RTP packet byte for byte as libsrtp does with the same DTLS-SRTP keys — live packets
across a sequence-number wrap (the ROC), NACK resends up to 127 packets back, refusal of older
ones, RTX on its own SSRC, header extensions and CSRCs — and reports the same rollover
counters (``Viewer.roc`` as ``stream_roc``). Two viewers of one table, one on each path, send to
two UDP sockets on 127.0.0.1; their datagrams are compared.
"""

from __future__ import annotations

import os
import socket
import struct

import pylibsrtp
import pytest

from rtp import fanout, srtp_gcm
from rtp.dtls import SrtpKeys
from rtp.srtp import SrtpSession, new_tx_context, stream_roc

pytestmark = pytest.mark.skipif(not fanout.NATIVE, reason="needs the native fan-out "
                                "(covered by test_fanout's build check)")

GCM = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
LIVE = 3000  # live packets: the wire's sequence numbers wrap after 529 of them
NACK_AT = {0, 400, 529, 535, 560, 600, 700, 2900}


def receiver() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.settimeout(2)
    return s


def packet(seq: int, ts: int, ssrc: int, size: int = 900, csrcs: int = 0,
           extension: bytes = b"") -> bytes:
    first = 0x80 | csrcs | (0x10 if extension else 0)
    head = struct.pack("!BBHII", first, 96, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    head += b"".join(struct.pack("!I", 0x1000 + i) for i in range(csrcs))
    if extension:
        head += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    return head + os.urandom(size - len(head))


def test_installed_and_keys_checked() -> None:
    assert srtp_gcm.install(fanout._NATIVE_MODULE) and fanout._NATIVE_MODULE.gcm_installed()
    with pytest.raises(ValueError):
        srtp_gcm.session_keys(b"k" * 16, b"s" * 14)
    engine = fanout.open_engine(1)
    try:
        with pytest.raises(ValueError):
            engine.viewer(new_tx_context(keys()), b"k" * 15, b"s" * 12)
    finally:
        engine.close()


def keys() -> SrtpKeys:
    return SrtpKeys(GCM, os.urandom(16), os.urandom(12), os.urandom(16), os.urandom(12))


def test_every_byte_as_libsrtp() -> None:
    k = keys()
    engine = fanout.open_engine(1)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sinks = [receiver(), receiver()]
    try:
        table = engine.table()
        ctx_libsrtp, ctx_gcm = new_tx_context(k), new_tx_context(k)
        viewers = [engine.viewer(ctx_libsrtp),
                   engine.viewer(ctx_gcm, *srtp_gcm.session_keys(k.tx_key, k.tx_salt))]
        assert [v.gcm for v in viewers] == [False, True]
        ssrc, rtx_ssrc = 0x1234, 0x5678
        for v, sink in zip(viewers, sinks, strict=True):
            v.set_address(sender.fileno(), sink.getsockname())
            v.set_track(0, 96, ssrc, 7, 11)  # the viewer's own SSRC and offsets
            v.join(0, table)
        # live: from 65000 (65007 on the wire) over the wrap (ROC 0 -> 1), with header
        # extensions and CSRCs now and then; NACK resends around the wrap reach back across it
        # (libsrtp guesses ROC - 1 for them)
        for n in range(LIVE):
            seq = 65000 + n
            if n % 97 == 0:
                data = packet(seq, n * 3000, 0xABC, csrcs=2, extension=b"\x10\xaa\x00\x00")
            else:
                data = packet(seq, n * 3000, 0xABC, size=200 + n % 1100)
            table.fan_out(data, seq & 0xFFFF, (n * 3000) & 0xFFFFFFFF)
            if n in NACK_AT:  # just behind, at the window's edge, too old (refused)
                for back in (1, 60, 127, 128, 600):
                    old = packet((seq + 7 - back) & 0xFFFF, 0, ssrc)
                    for v in viewers:
                        v.send(0, old, 1, 0)
                rtx = packet(n & 0xFFFF, 0, rtx_ssrc, size=300)
                for v in viewers:
                    v.send(0, rtx, 2, 0)
                engine.sync()
                compare(sinks)
        engine.sync()
        compare(sinks)
        for s in (ssrc, rtx_ssrc):
            assert viewers[1].roc(s) == stream_roc(ctx_libsrtp, s)
        assert viewers[1].roc(ssrc) == 1 and viewers[1].roc(0x9999) is None
        assert viewers[0].roc(ssrc) is None  # libsrtp's: read with stream_roc
        assert viewers[0].counters(0) == viewers[1].counters(0)  # refusals counted alike
        assert viewers[1].counters(0)[0] == LIVE  # every live packet sent
        # the receiver decrypts what the GCM path sent (and libsrtp's agrees byte for byte)
        rx = SrtpSession(SrtpKeys(GCM, k.rx_key, k.rx_salt, k.tx_key, k.tx_salt))  # the far end
        probe = packet(12345, 1, ssrc)
        fresh = engine.viewer(new_tx_context(k), *srtp_gcm.session_keys(k.tx_key, k.tx_salt))
        fresh.set_address(sender.fileno(), sinks[1].getsockname())
        fresh.set_track(0, 96, ssrc, 0, 0)
        fresh.send(0, probe, 1, 0)
        engine.sync()
        assert rx.unprotect(sinks[1].recv(2048)) == probe
    finally:
        engine.close()
        sender.close()
        for s in sinks:
            s.close()


def compare(sinks: list[socket.socket]) -> None:
    got: list[list[bytes]] = [[], []]
    for i, sink in enumerate(sinks):
        sink.setblocking(False)
        while True:
            try:
                got[i].append(sink.recv(2048))
            except BlockingIOError:
                break
    assert len(got[0]) == len(got[1]) and got[0], (len(got[0]), len(got[1]))
    for a, b in zip(*got, strict=True):
        assert a == b
