"""ICE-TCP against UDP viewers: server CPU per forwarded packet (issue 21).

``python -m bench.ice_tcp [--viewers 100] [--seconds 5] [--rate 400]`` runs, in this process,
a Forwarder with its ICE-TCP port and a synthetic H264-like source (1200-byte packets at
``--rate`` packets/s, a keyframe every second), then connects ``--viewers`` minimal viewers
(:class:`MiniViewer`: ICE, DTLS client, SRTP keys — over UDP or RFC 4571-framed TCP) and
measures, over the window, the server's CPU time — the trio thread plus the C fan-out's
worker threads (``rtp-fanout-N``), each read from ``/proc/self/task/<tid>/schedstat`` — divided
by the packets forwarded (fan-out, SRTP, framing, the kernel's send path on loopback). The
viewers' sockets are drained by a separate thread (its CPU is not counted). One table is
printed (``--json``: the rows as JSON). The machine may be shared: the figure is CPU time
per packet, not wall time.

:class:`MiniViewer` is also the ICE-TCP client of ``tests/integration/webrtc/test_ice_tcp.py``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import selectors
import socket
import threading
import time
from typing import Any

import trio

from rtp.dtls import Certificate, DtlsEndpoint
from rtp.errors import ParseError
from rtp.forwarder import Forwarder
from rtp.packet import build_rtp
from rtp.srtp import SrtpSession
from rtp.stun import build_binding_request, check_binding_response
from rtp.tcp import TcpLimits
from rtp.tcp_framing import FrameDecoder, encode

VIDEO_SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoD2wEQAAAwABAAADADIPFi5I,"
    "aMuMsg==; profile-level-id=42C01E\r\n"
)


def offer_sdp(cert: Certificate, ufrag: str, pwd: str, host: str, port: int) -> str:
    return (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        f"m=video {port} UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 {host}\r\na=mid:0\r\n"
        f"a=recvonly\r\na=rtcp-mux\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"
        f"a=fingerprint:sha-256 {cert.fingerprint}\r\na=setup:actpass\r\n"
        "a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack pli\r\n"
        "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n"
    )


def answer_candidates(sdp: str) -> list[tuple[str, str, int]]:
    """(transport, ip, port) of every candidate of an answer."""
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            out.append((parts[2].lower(), parts[4], int(parts[5])))
    return out


_CERT: Certificate | None = None


def _certificate() -> Certificate:
    global _CERT
    if _CERT is None:
        _CERT = Certificate.generate()
    return _CERT


class MiniViewer:
    """A browser-like viewer reduced to what a test needs: ICE (controlling, USE-CANDIDATE),
    DTLS client, SRTP; over UDP or ICE-TCP (RFC 4571 frames, this side active)."""

    def __init__(self, transport: str = "tcp", host: str = "127.0.0.1") -> None:
        self.transport = transport
        self.host = host
        self.cert = _certificate()
        self.ufrag, self.pwd = secrets.token_hex(4), secrets.token_hex(16)
        self.sock: trio.socket.SocketType | None = None
        self.decoder = FrameDecoder(max_frame=0xFFFF)
        self.srtp: SrtpSession | None = None
        self.r_ufrag = self.r_pwd = self.r_fp = ""
        self.server: tuple[str, int] = ("", 0)
        self.media = 0
        self.stun_ok = 0
        self.peer_id = ""
        self._frames: list[bytes] = []

    def offer(self) -> str:
        return offer_sdp(self.cert, self.ufrag, self.pwd, self.host, 9)

    def accept(self, answer: str) -> None:
        lines = answer.splitlines()
        self.r_ufrag = next(x[12:] for x in lines if x.startswith("a=ice-ufrag:"))
        self.r_pwd = next(x[10:] for x in lines if x.startswith("a=ice-pwd:"))
        self.r_fp = next(x.split(None, 1)[1] for x in lines if x.startswith("a=fingerprint:"))
        cands = [c for c in answer_candidates(answer) if c[0] == self.transport]
        self.server = (cands[0][1], cands[0][2])

    async def open(self) -> None:
        if self.transport == "tcp":
            self.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            await self.sock.connect(self.server)
        else:
            self.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            await self.sock.bind((self.host, 0))
            await self.sock.connect(self.server)

    async def send(self, packet: bytes) -> None:
        assert self.sock is not None
        if self.transport == "tcp":
            data = memoryview(encode(packet))
            while data:
                data = data[await self.sock.send(data):]
        else:
            await self.sock.send(packet)

    async def receive(self) -> bytes:
        assert self.sock is not None
        if self.transport == "udp":
            return await self.sock.recv(65536)
        while not self._frames:
            data = await self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self._frames += self.decoder.feed(data)
        return self._frames.pop(0)

    async def check(self, use_candidate: bool = True) -> tuple[str, int]:
        """One Binding request; returns the mapped address."""
        tid = secrets.token_bytes(12)
        await self.send(build_binding_request(self.ufrag, self.r_ufrag, self.r_pwd,
                                              use_candidate, transaction_id=tid))
        while True:
            data = await self.receive()
            if data[0] < 4:
                mapped = check_binding_response(data, tid, self.r_pwd)
                self.stun_ok += 1
                return mapped

    async def establish(self) -> None:
        await self.open()
        await self.check()
        dtls = DtlsEndpoint(self.cert, self.r_fp, "client")
        dtls.start(trio.current_time())
        while not dtls.handshake_complete:
            for d in dtls.datagrams_to_send():
                await self.send(d)
            with trio.move_on_after(1.0):
                data = await self.receive()
                if 20 <= data[0] <= 63:
                    dtls.receive(data, trio.current_time())
                continue
            dtls.handle_timeout(trio.current_time())
        for d in dtls.datagrams_to_send():
            await self.send(d)
        self.srtp = SrtpSession(dtls.srtp_keys())

    async def receive_media(self, count: int) -> list[bytes]:
        """The next ``count`` media packets, decrypted."""
        assert self.srtp is not None
        out = []
        while len(out) < count:
            data = await self.receive()
            if 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:
                try:
                    out.append(self.srtp.unprotect(data))
                    self.media += 1
                except ParseError:
                    pass
        return out

    def raw(self) -> socket.socket:
        """The plain socket (for a drain thread)."""
        assert self.sock is not None
        return socket.socket(fileno=self.sock.detach())


async def produce(fwd: Forwarder, source_id: str, rate: float, size: int = 1200,
                  fps: int = 25) -> None:
    """A synthetic video track: ``rate`` packets/s of ``size`` bytes, frames of rate/fps
    packets, a keyframe (IDR) every second."""
    source = fwd.source(source_id)
    per_frame = max(1, int(rate / fps))
    seq = 0
    frame = 0
    interval = 1.0 / rate
    next_at = trio.current_time()
    while True:
        nal = 0x65 if frame % fps == 0 else 0x41
        for i in range(per_frame):
            pkt = build_rtp(96, seq & 0xFFFF, frame * 3600, 0xABC,
                            bytes([nal]) + bytes(size - 13), marker=i == per_frame - 1)
            source.on_datagram("video", pkt, trio.current_time())
            seq += 1
            next_at += interval
            now = trio.current_time()
            if next_at > now:
                await trio.sleep(next_at - now)
        frame += 1


def drain(socks: list[socket.socket], stop: threading.Event) -> None:
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    buf = bytearray(65536)
    while not stop.is_set():
        for key, _ in sel.select(0.1):
            try:
                while key.fileobj.recv_into(buf):  # type: ignore[union-attr]
                    pass
            except (BlockingIOError, OSError):
                pass
    sel.close()


def thread_cpu(tid: int) -> float:
    """CPU seconds thread ``tid`` of this process has run (``schedstat``, nanoseconds)."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


async def measure(transport: str, viewers: int, seconds: float, rate: float) -> dict[str, Any]:
    # every viewer comes from 127.0.0.1: no per-IP limit here
    fwd = Forwarder(tcp_host="127.0.0.1", tcp_port=0, tcp_limits=TcpLimits(max_per_ip=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(fwd.run)
        source = await nursery.start(fwd.open_source, "cam", ("video",))
        source.set_sdp(VIDEO_SDP)
        nursery.start_soon(produce, fwd, "cam", rate)
        vs = []
        for _ in range(viewers):
            v = MiniViewer(transport)
            _, answer = await fwd.add_peer("cam", v.offer())
            v.accept(answer.sdp)
            vs.append(v)
        async with trio.open_nursery() as setup:
            for v in vs:
                setup.start_soon(v.establish)
        await trio.sleep(1.5)  # the GOP bursts are out
        stop = threading.Event()
        socks = [v.raw() for v in vs]
        thread = threading.Thread(target=drain, args=(socks, stop), daemon=True)
        thread.start()
        await trio.sleep(0.5)
        peers = list(source.peers.values())
        sent0 = sum(t.packets for p in peers for t in p.out.values())
        drop0 = sum(t.dropped for p in peers for t in p.out.values())
        me = threading.get_native_id()
        engine = fwd.engine
        workers = [w["tid"] for w in engine.stats() if w["tid"]] if engine is not None else []
        main0 = thread_cpu(me)
        work0 = sum(thread_cpu(t) for t in workers)
        wall0 = time.perf_counter()
        await trio.sleep(seconds)
        wall = time.perf_counter() - wall0
        main = thread_cpu(me) - main0
        work = sum(thread_cpu(t) for t in workers) - work0
        cpu = main + work
        native = sum(p.native for p in peers)
        sent = sum(t.packets for p in peers for t in p.out.values()) - sent0
        dropped = sum(t.dropped for p in peers for t in p.out.values()) - drop0
        transports = {p.stats()["transport"] for p in peers}
        stop.set()
        thread.join()
        for s in socks:
            s.close()
        nursery.cancel_scope.cancel()
    per = 1e6 / max(sent, 1)
    return {"transport": transport, "viewers": viewers, "native_viewers": native,
            "workers": len(workers), "seconds": round(wall, 2), "packets": sent,
            "dropped": dropped, "cpu_s": round(cpu, 3), "trio_us_per_packet": round(main * per, 2),
            "workers_us_per_packet": round(work * per, 2),
            "us_per_packet": round(cpu * per, 2),
            "peer_transports": sorted(t for t in transports if t)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=200.0,
                        help="source packets per second (1200 bytes each)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = [trio.run(measure, t, args.viewers, args.seconds, args.rate) for t in ("udp", "tcp")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'transport':9} | {'viewers':7} | {'native':6} | {'packets':8} | {'dropped':7} | "
          f"{'CPU s':6} | {'trio µs/pkt':11} | {'workers µs/pkt':14} | {'µs/packet':9}")
    print("-" * 108)
    for r in rows:
        print(f"{r['transport']:9} | {r['viewers']:7} | {r['native_viewers']:6} | "
              f"{r['packets']:8} | {r['dropped']:7} | {r['cpu_s']:6} | "
              f"{r['trio_us_per_packet']:11} | {r['workers_us_per_packet']:14} | "
              f"{r['us_per_packet']:9}")
    udp, tcp = rows
    print(f"\nICE-TCP costs {tcp['us_per_packet'] / udp['us_per_packet']:.2f}× the server CPU per "
          f"forwarded packet of UDP ({'C' if _native() else 'Python'} fan-out, "
          f"{udp['workers'] or 'no'} worker threads; trio thread + workers).")


def _native() -> bool:
    from rtp.fanout import NATIVE

    return NATIVE


if __name__ == "__main__":
    main()

