"""WHIP ingest under load: ``python -m bench.whip [--viewers 100] [--seconds 10]``.

Runs the real server (``python -m trio_core``, WebRTC + WHIP on 127.0.0.1) and prints a table:

* **WHIP path**: a publisher built from the ``rtp`` cores (ICE as controlling agent with
  USE-CANDIDATE, DTLS client, SRTP) relays the RTP of one FFmpeg (testsrc2 + noise, libx264
  baseline, Opus; ``bench.common.ffmpeg_rtp_argv``) to ``POST /whip/bench`` and records
  ``time.time()`` right after each ``sendto`` with the packet's payload key
  (:func:`bench.viewer.payload_key`). ``--viewers`` load viewers (``bench.viewer``) play
  ``POST /whep/bench`` one after another; each one's POST -> first keyframe packet is the
  *publisher -> first viewer frame* time (the GOP cache answers at once). Over ``--seconds``
  the probe viewers' kernel receive timestamps (``SO_TIMESTAMPNS``) joined by payload key
  give the added latency publisher -> viewer (publisher send -> viewer kernel receive:
  the server's receive, decrypt, fan-out to every viewer and send, plus two loopback hops),
  and the server's own CPU time (``/proc/<pid>/stat``, no children) divided by the packets
  the viewers received gives the CPU per forwarded packet.
* **process path**: the same server, one process with ``webrtc.enabled`` (lavfi testsrc2 +
  sine; the server's FFmpeg legs encode H264 + Opus into its Source over loopback), the same
  number of viewers on ``POST /api/v3/process/bench/whep``: CPU per forwarded packet of the
  server process (the FFmpeg children are not counted, as the publisher is not counted
  above) and the first-frame time. Its forwarding latency is measured by ``python -m
  bench`` (the tee harness), not here.

Numbers taken on a shared machine are noisy; CPU per packet (process CPU time / packets)
is the least sensitive figure. Everything started here is stopped before it returns.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import trio
from aioice import stun

from bench.common import ffmpeg_rtp_argv, free_tcp_port, percentile, proc_sample
from bench.servers import WhepClientMixin
from bench.viewer import ViewerPool, payload_key
from rtp.dtls import Certificate, DtlsEndpoint
from rtp.packet import parse_rtp, rewrite
from rtp.sdp import parse_offer
from rtp.srtp import SrtpSession

ROOT = Path(__file__).resolve().parent.parent
VIDEO_PT, AUDIO_PT = 102, 111


@dataclass
class PathResult:
    name: str
    viewers: int = 0
    connected: int = 0
    first_frame_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    packets: int = 0
    seconds: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    latency_at: list[tuple[float, float]] = field(default_factory=list)  # (sent, ms)
    error: str | None = None

    @property
    def us_per_packet(self) -> float | None:
        return self.cpu_s / self.packets * 1e6 if self.packets else None


def publish_offer(ufrag: str, pwd: str, fingerprint: str) -> str:
    common = (f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=fingerprint:sha-256 {fingerprint}\r\n"
              "a=setup:active\r\na=rtcp-mux\r\na=sendonly\r\n")
    return ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
            f"m=video 9 UDP/TLS/RTP/SAVPF {VIDEO_PT}\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n{common}"
            f"a=rtpmap:{VIDEO_PT} H264/90000\r\na=fmtp:{VIDEO_PT} packetization-mode=1;"
            "profile-level-id=42e01f\r\n"
            f"m=audio 9 UDP/TLS/RTP/SAVPF {AUDIO_PT}\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n{common}"
            f"a=rtpmap:{AUDIO_PT} opus/48000/2\r\n")


class BenchPublisher:
    """A minimal WHIP publisher (see the module docstring) relaying FFmpeg's RTP."""

    def __init__(self) -> None:
        self.cert = Certificate.generate("bench-publisher")
        self.ufrag, self.pwd = secrets.token_hex(4), secrets.token_hex(16)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.sent: list[tuple[int, float]] = []
        self.srtp: SrtpSession | None = None
        self.server: tuple[str, int] = ("127.0.0.1", 0)
        self.answer_ufrag = self.answer_pwd = ""

    def stun_request(self) -> bytes:
        msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        msg.attributes["USERNAME"] = f"{self.answer_ufrag}:{self.ufrag}"
        msg.attributes["PRIORITY"] = 0x6E7F1EFF
        msg.attributes["ICE-CONTROLLING"] = secrets.randbits(63)
        msg.attributes["USE-CANDIDATE"] = None
        msg.add_message_integrity(self.answer_pwd.encode())
        msg.add_fingerprint()
        return bytes(msg)

    async def connect(self, http: httpx.AsyncClient, url: str) -> None:
        resp = await http.post(url, content=publish_offer(self.ufrag, self.pwd,
                                                          self.cert.fingerprint),
                               headers={"Content-Type": "application/sdp"})
        if resp.status_code != 201:
            raise RuntimeError(f"WHIP POST {resp.status_code}: {resp.text[:200]}")
        answer = parse_offer(resp.text, setups=("passive",))
        self.answer_ufrag, self.answer_pwd = answer.ice_ufrag, answer.ice_pwd
        port = int(resp.text.split("m=video ", 1)[1].split()[0])
        self.server = ("127.0.0.1", port)
        dtls = DtlsEndpoint(self.cert, answer.fingerprint, "client")
        with trio.fail_after(10):
            self.sock.sendto(self.stun_request(), self.server)
            await trio.sleep(0.05)
            dtls.start(trio.current_time())
            while not dtls.handshake_complete:
                for d in dtls.datagrams_to_send():
                    self.sock.sendto(d, self.server)
                with trio.move_on_after(0.2):
                    await trio.lowlevel.wait_readable(self.sock)
                while True:
                    try:
                        data = self.sock.recv(4096)
                    except BlockingIOError:
                        break
                    if 20 <= data[0] <= 63:
                        dtls.receive(data, trio.current_time())
                dtls.handle_timeout(trio.current_time())
            for d in dtls.datagrams_to_send():
                self.sock.sendto(d, self.server)
        self.srtp = SrtpSession(dtls.srtp_keys())

    async def relay(self, rtp_sock: socket.socket, pt: int) -> None:
        assert self.srtp is not None
        while True:
            await trio.lowlevel.wait_readable(rtp_sock)
            while True:
                try:
                    data = rtp_sock.recv(2048)
                except BlockingIOError:
                    break
                if len(data) < 12 or 192 <= data[1] <= 223:
                    continue  # FFmpeg's sender reports
                hdr = parse_rtp(data)
                out = self.srtp.protect(rewrite(data, pt, hdr.sequence, hdr.timestamp, hdr.ssrc))
                self.sock.sendto(out, self.server)
                self.sent.append((payload_key(data[hdr.header_size:]), time.time()))

    async def drain(self) -> None:
        """Read (and drop) what the server sends back (RTCP), answer nothing; keep consent."""
        next_check = 0.0
        while True:
            with trio.move_on_after(1.0):
                await trio.lowlevel.wait_readable(self.sock)
            while True:
                try:
                    self.sock.recv(4096)
                except BlockingIOError:
                    break
            if time.monotonic() > next_check:
                self.sock.sendto(self.stun_request(), self.server)
                next_check = time.monotonic() + 5


def _received(pool: ViewerPool) -> int:
    return sum(t.received for v in pool.viewers for t in v.tracks.values())


async def _connect_viewers(pool: ViewerPool, whep: WhepClientMixin, url: str, n: int,
                           result: PathResult) -> None:
    for _ in range(n):
        v = pool.new_viewer()
        await whep.whep_connect(url, v)
        if not await pool.establish(v):
            continue
        result.connected += 1
        with trio.move_on_after(5):
            while not v.timing.first_keyframe:
                await trio.sleep(0.005)
        if v.timing.first_keyframe:
            result.first_frame_ms.append((v.timing.first_keyframe - v.timing.start) * 1000)


async def _measure(pool: ViewerPool, pid: int, seconds: float, result: PathResult) -> None:
    await trio.sleep(1.0)
    c0, p0, t0 = proc_sample(pid), _received(pool), time.monotonic()
    await trio.sleep(seconds)
    c1, p1, t1 = proc_sample(pid), _received(pool), time.monotonic()
    assert c0 is not None and c1 is not None
    result.cpu_s, result.packets, result.seconds = c1.cpu - c0.cpu, p1 - p0, t1 - t0


async def run(ffmpeg: str, viewers: int, seconds: float, size: str) -> list[PathResult]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-whip-"))
    port = free_tcp_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CORE_API_ADDRESS": f"127.0.0.1:{port}", "CORE_DEMO_ENABLE": "false",
           "CORE_DB_DIR": str(workdir / "db"), "CORE_STORAGE_DISK_DIR": str(workdir / "data"),
           "CORE_WEBRTC_ENABLE": "true", "CORE_WEBRTC_BIND_ADDRESS": "127.0.0.1",
           "CORE_WHIP_ENABLE": "true", "CORE_FFMPEG_BINARY": ffmpeg,
           "CORE_WEBRTC_MAX_PENDING_PER_CLIENT": "0", "CORE_SESSIONS_ENABLE": "false"}
    whip, proc_path = PathResult("WHIP publisher", viewers), PathResult("process (FFmpeg legs)",
                                                                       viewers)
    log = open(workdir / "server.log", "wb")  # noqa: SIM115
    try:
        async with httpx.AsyncClient(base_url=base, timeout=20) as http, \
                trio.open_nursery() as nursery:
            server = await nursery.start(partial(
                trio.run_process, [sys.executable, "-m", "trio_core"], env=env,
                cwd=str(workdir), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                check=False))
            with trio.fail_after(30):
                while True:
                    try:
                        if (await http.get("/api", timeout=1)).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await trio.sleep(0.1)
            # -- the WHIP path ---------------------------------------------------------------
            video_rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            audio_rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for s in (video_rx, audio_rx):
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
            publisher = BenchPublisher()
            await publisher.connect(http, f"{base}/whip/bench")
            nursery.start_soon(publisher.relay, video_rx, VIDEO_PT)
            nursery.start_soon(publisher.relay, audio_rx, AUDIO_PT)
            nursery.start_soon(publisher.drain)
            argv = ffmpeg_rtp_argv(ffmpeg, video_rx.getsockname()[1], audio_rx.getsockname()[1],
                                   str(workdir / "pub.sdp"), size=size, bitrate="2M")
            enc_scope = trio.CancelScope()

            async def encoder() -> None:
                with enc_scope:
                    await trio.run_process(argv, stdin=subprocess.DEVNULL, check=False)

            nursery.start_soon(encoder)
            await trio.sleep(3.0)  # a GOP in the cache
            async with trio.open_nursery() as inner:
                pool = ViewerPool(probes=4)
                await inner.start(pool.run)
                whep = WhepClientMixin()
                whep.http = http
                await _connect_viewers(pool, whep, f"{base}/whep/bench", viewers, whip)
                await _measure(pool, server.pid, seconds, whip)
                since = time.time() - seconds
                sent = {}
                dup = set()
                for key, t in publisher.sent:
                    if key in sent:
                        dup.add(key)
                    sent[key] = t
                for v in pool.viewers:
                    for key, arrival in v.latency_samples if v.probe else ():
                        t = sent.get(key)
                        if key not in dup and t is not None and arrival >= since \
                                and -0.001 < arrival - t < 5:
                            whip.latency_ms.append((arrival - t) * 1000)
                            whip.latency_at.append((t, (arrival - t) * 1000))
                inner.cancel_scope.cancel()
            enc_scope.cancel()
            # -- the process path ------------------------------------------------------------
            from bench.product import process_config

            cfg = process_config(size)
            resp = await http.post("/api/v3/process", json=cfg)
            if resp.status_code != 200:
                raise RuntimeError(f"create process: {resp.status_code} {resp.text[:200]}")
            with trio.fail_after(30):
                while not ((await http.get("/api/v3/process/bench/state")).json()
                           .get("webrtc") or {}).get("live"):
                    await trio.sleep(0.2)
            await trio.sleep(3.0)
            async with trio.open_nursery() as inner:
                pool = ViewerPool(probes=0)
                await inner.start(pool.run)
                whep = WhepClientMixin()
                whep.http = http
                await _connect_viewers(pool, whep, f"{base}/api/v3/process/bench/whep",
                                       viewers, proc_path)
                await _measure(pool, server.pid, seconds, proc_path)
                inner.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    except Exception as exc:  # a broken path is a result, not a crash of the bench
        whip.error = whip.error or f"{type(exc).__name__}: {exc}"
    finally:
        log.close()
    return [whip, proc_path]


def table(results: list[PathResult]) -> str:
    def ms(values: list[float], q: float) -> str:
        v = percentile(values, q)
        return "-" if v is None else f"{v:.2f}"

    rows = ["| path | viewers | connected | first frame p50 / max ms | latency p50 / p99 ms "
            "(samples) | server CPU % | packets/s out | CPU µs / packet |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        per = r.us_per_packet
        rows.append(
            f"| {r.name} | {r.viewers} | {r.connected} | {ms(r.first_frame_ms, 50)} / "
            f"{max(r.first_frame_ms) if r.first_frame_ms else 0:.0f} | "
            f"{ms(r.latency_ms, 50)} / {ms(r.latency_ms, 99)} ({len(r.latency_ms)}) | "
            f"{100 * r.cpu_s / r.seconds if r.seconds else 0:.0f} | "
            f"{r.packets / r.seconds if r.seconds else 0:.0f} | "
            f"{'-' if per is None else f'{per:.2f}'} |")
        if r.error:
            rows.append(f"| error: {r.error} |||||||")
    if results[0].us_per_packet and results[1].us_per_packet:
        rows.append(f"\nCPU per packet, WHIP / process path: "
                    f"{results[0].us_per_packet / results[1].us_per_packet:.2f}x")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--viewers", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--ffmpeg", default="")
    ap.add_argument("--slowest", type=int, default=0, help="list the N slowest packets")
    args = ap.parse_args()
    ffmpeg = args.ffmpeg
    if not ffmpeg:
        from trio_core.ffmpeg.binary import find_ffmpeg

        ffmpeg = find_ffmpeg("")
    results = trio.run(run, ffmpeg, args.viewers, args.seconds, args.size)
    print(table(results))
    if args.slowest:
        print("\nslowest packets (publisher send time, ms):")
        for t, ms in sorted(results[0].latency_at, key=lambda x: -x[1])[:args.slowest]:
            print(f"  {t:.3f} {ms:.2f}")


if __name__ == "__main__":
    main()
